"""Two augmented views of each training image, for DISC (METHODS.md section 7): weak = a random
translation (pad and crop; no flips, which would change digits and text), strong = the weak view
followed by timm's RandAugment."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .base import InMemoryImages


class TwoViews(Dataset):
    def __init__(self, base: InMemoryImages, randaugment: str = "rand-m9-mstd0.5"):
        self.base = base
        size = base.images.shape[-1]
        self.weak = v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect")
        fill = int(base.mean * 255)
        chans = base.images.shape[1]
        self.strong = rand_augment_transform(randaugment, {"translate_const": max(1, int(size * 0.45)), "img_mean": fill if chans == 1 else (fill,) * 3})

    def __len__(self) -> int:
        return len(self.base)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0).sub_(self.base.mean).div_(self.base.std)

    def __getitem__(self, index: int):
        weak = self.weak(self.base.images[index])  # uint8 C x H x W
        chans = weak.shape[0]
        pil = Image.fromarray(weak[0].numpy(), "L") if chans == 1 else Image.fromarray(weak.permute(1, 2, 0).numpy(), "RGB")
        strong = torch.from_numpy(np.asarray(self.strong(pil)).copy())
        strong = strong.unsqueeze(0) if chans == 1 else strong.permute(2, 0, 1)
        return (self._normalise(weak), self._normalise(strong)), index
