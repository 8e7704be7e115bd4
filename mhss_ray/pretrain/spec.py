"""What makes a pretrained file (mhss-pretrain): its spec, and the name that the spec's digest gives it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

VERSION = 2  # raise when the images or the training change: every cached file is then made again


@dataclass(frozen=True)
class PretrainSpec:
    model: str = "resnet18"
    image_size: int = 32
    in_chans: int = 1
    categories: int = 32
    images: int = 12_000
    epochs: int = 8
    batch_size: int = 32  # small batches: many steps for the few images a CPU trains in minutes
    lr: float = 1e-3
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps({**dataclasses.asdict(self), "version": VERSION}, sort_keys=True).encode()).hexdigest()[:10]

    def file_name(self) -> str:
        return f"{self.model}-{self.image_size}px-{self.in_chans}ch-glyphs{self.categories}-{self.digest()}.pth"
