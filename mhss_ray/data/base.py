"""What every dataset loader returns: image datasets that yield (image, index) and label arrays.

Labels live beside the images, not inside them, so that the trainer can hold the observed (noisy,
later corrected) labels of the training split while the clean ones stay untouched for metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class Split:
    images: Dataset  # item i -> (float image tensor C x H x W, i)
    labels: np.ndarray  # N x C uint8, the clean labels

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    name: str
    class_names: list[str]
    in_chans: int
    train: Split
    val: Split
    test: Split
    confusions: list = field(default_factory=list)  # default [a, b, rate] pairs for complex noise
    class_weights: np.ndarray | None = None  # per class, for F2-CIW (Sewer-ML's official weights)
    # real noise: training rows whose labels someone verified, and those labels (noise.clean_subset)
    verified_rows: np.ndarray | None = None
    verified_labels: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class InMemoryImages(Dataset):
    """Small datasets built in memory (uint8 N x C x H x W), normalised per item; the training split
    through `augment` (data.randaugment: views.UInt8RandAugment), the others plain."""

    def __init__(self, images: torch.Tensor, mean: float, std: float, augment=None):
        self.images = images
        self.mean, self.std = mean, std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        x = self.images[index]
        if self.augment is not None:
            x = self.augment(x)
        return x.float().div_(255.0).sub_(self.mean).div_(self.std), index

    def evaluation_view(self) -> Dataset:
        """The same images without augmentation."""
        return self if self.augment is None else InMemoryImages(self.images, self.mean, self.std)

    def two_views(self) -> Dataset:
        from .views import TwoViews  # DISC only: its own weak (plain) and strong views

        return TwoViews(self.evaluation_view())
