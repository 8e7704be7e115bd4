"""Datasets, registered by name, and the label-noise injectors."""

from __future__ import annotations

from typing import Callable

from ..config import RunConfig
from . import digits_mosaic
from .base import DataBundle, Split

# name -> builder(run config) -> DataBundle
DATASETS: dict[str, Callable[[RunConfig], DataBundle]] = {
    "digits-mosaic": lambda cfg: digits_mosaic.build(cfg.data, cfg.seed),
}


def build_dataset(cfg: RunConfig) -> DataBundle:
    return DATASETS[cfg.data.name](cfg)


__all__ = ["DATASETS", "DataBundle", "Split", "build_dataset"]
