"""Image transforms for the image-file datasets: timm's for RGB, a tensor pipeline for other band counts.

Training: a random resized crop that keeps most of the image (a multi-label image loses a label
when the crop cuts its object out), a horizontal flip, then timm's RandAugment. Evaluation: the
whole image resized to the network input (`squash`, no centre crop, for the same reason).
RandAugment's colour operations assume RGB, so 1- and 4-band images get the geometric part only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig
from ..errors import UserError

CROP_SCALE = (0.6, 1.0)


@dataclass
class ImageTransforms:
    train: Callable  # H x W x C uint8 array -> C x H x W float tensor, augmented
    weak: Callable  # the training transform without RandAugment (DISC's weak view)
    eval: Callable


class FromRGBArray:
    """H x W x 3 uint8 array -> a timm (PIL) transform. A class, not a lambda: DataLoader workers
    started with spawn (macOS, Windows) receive the dataset pickled."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        return self.transform(Image.fromarray(array, "RGB"))


class FromBandsArray:
    """H x W x C uint8 array -> a torchvision v2 transform on the C x H x W tensor."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        return self.transform(torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))))


def _rgb(cfg: DataConfig, mean, std, train: bool, randaugment: str | None) -> Callable:
    from timm.data import create_transform  # timm and torchvision take seconds to import: only where a run reads images

    size = (3, cfg.image_size, cfg.image_size)
    if train:
        t = create_transform(
            size,
            is_training=True,
            scale=CROP_SCALE,
            hflip=0.5,
            color_jitter=None,
            auto_augment=randaugment,
            interpolation="bilinear",
            mean=mean,
            std=std,
        )
    else:
        t = create_transform(size, is_training=False, crop_pct=1.0, crop_mode="squash", interpolation="bilinear", mean=mean, std=std)
    return FromRGBArray(t)


def _bands(cfg: DataConfig, mean, std, train: bool) -> Callable:
    from torchvision.transforms import v2

    s = cfg.image_size
    head = (
        [v2.RandomResizedCrop(s, scale=CROP_SCALE, antialias=True), v2.RandomHorizontalFlip()]
        if train
        else [v2.Resize((s, s), antialias=True)]
    )
    t = v2.Compose([*head, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    return FromBandsArray(t)


def build_transforms(cfg: DataConfig, chans: int, mean: list[float], std: list[float]) -> ImageTransforms:
    randaugment = None if cfg.randaugment == "none" else cfg.randaugment
    if chans == 3:
        try:
            train = _rgb(cfg, mean, std, True, randaugment)
        except (AssertionError, ValueError, KeyError, IndexError) as exc:
            raise UserError(
                f"data.randaugment: {cfg.randaugment!r} is not a timm RandAugment spec such as rand-m9-mstd0.5 ({exc})"
            ) from None
        return ImageTransforms(train, _rgb(cfg, mean, std, True, None), _rgb(cfg, mean, std, False, None))
    train = _bands(cfg, mean, std, True)
    return ImageTransforms(train, train, _bands(cfg, mean, std, False))
