"""RandAugment for the in-memory datasets, and the two views of each training image DISC reads
(METHODS.md section 7): weak = the plain image, strong = timm's RandAugment of it. Every method
trains on the RandAugment view (`data.randaugment`, on by default, as image files train); DISC's
pair is the same whatever that setting (it needs two different views).

Translation, chosen on purpose: at most 10% of the side (timm reads `translate_pct`, default 45%;
the `translate_const` passed before did nothing). A digit tile of a 2 x 2 mosaic is half the side,
so 45% can move a digit out of the frame while its label stays positive: augmentation would add
label noise of its own. Measured with 45% against 10% (seed 0, complex 0.2, 30 epochs): MHSS 72.65
and 73.18, Co-teaching 79.54 and 80.10 (the issue that chose it).

Measured on digits-mosaic (complex 0.2, 1,000 mosaics, 12 epochs of DISC's warm-up, seed 0): a weak
view of pad-4-reflect-and-crop left test mAP at 41 where plain ASL reaches 70: reflecting a mosaic's
border draws mirrored digit fragments, phantom labels for a multi-label image. With the plain image
as the weak view: 70.4."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError


DEFAULT_RANDAUGMENT = "rand-m9-mstd0.5"
TRANSLATE_PCT = 0.1


class UInt8RandAugment:
    """C x H x W uint8 tensor (1 or 3 channels) -> the same, through timm's RandAugment on a PIL image."""

    def __init__(self, spec: str, chans: int, mean: float):
        from timm.data.auto_augment import rand_augment_transform  # timm's import takes seconds: only where a run augments

        fill = int(mean * 255)
        self.chans = chans
        try:
            self.transform = rand_augment_transform(spec, {"translate_pct": TRANSLATE_PCT, "img_mean": fill if chans == 1 else (fill,) * 3})
        except (AssertionError, ValueError, KeyError, IndexError) as exc:
            why = f" ({exc})" if str(exc) else ""
            raise UserError(f"data.randaugment: {spec!r} is not a timm RandAugment spec such as rand-m9-mstd0.5{why}") from None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        one = self.chans == 1
        pil = Image.fromarray(image[0].numpy(), "L") if one else Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")
        out = torch.from_numpy(np.asarray(self.transform(pil)).copy())
        return out.unsqueeze(0) if one else out.permute(2, 0, 1)


class TwoViews(Dataset):
    def __init__(self, base: Dataset, randaugment: str = DEFAULT_RANDAUGMENT):
        """base: the plain in-memory images (base.InMemoryImages, which builds this view when DISC asks for two)."""
        self.base = base
        self.strong = UInt8RandAugment(randaugment, base.images.shape[1], base.mean)

    def __len__(self) -> int:
        return len(self.base)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0).sub_(self.base.mean).div_(self.base.std)

    def __getitem__(self, index: int):
        weak = self.base.images[index]  # uint8 C x H x W
        return (self._normalise(weak), self._normalise(self.strong(weak))), index
