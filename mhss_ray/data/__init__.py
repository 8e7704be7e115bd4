"""Datasets, registered by name, and the label-noise injectors."""

from __future__ import annotations

from typing import Callable

from ..config import RunConfig
from . import digits_mosaic, manifest, sewerml, treesat, ucmerced
from .base import DataBundle, Split

# name -> builder(run config) -> DataBundle
DATASETS: dict[str, Callable[[RunConfig], DataBundle]] = {
    "digits-mosaic": lambda cfg: digits_mosaic.build(cfg.data, cfg.seed),
    "ucmerced": ucmerced.build,
    "treesat": treesat.build,
    "sewerml": sewerml.build,
    "manifest": manifest.build,
}


# name -> class names, reading no more than the label file (search spaces expand per-class dimensions from it)
CLASS_NAMES: dict[str, Callable[[RunConfig], list[str]]] = {
    "digits-mosaic": lambda cfg: [str(c) for c in range(digits_mosaic.NUM_CLASSES)],
    "ucmerced": ucmerced.class_names,
    "treesat": treesat.class_names,
    "sewerml": sewerml.class_names,
    "manifest": manifest.class_names,
}


def build_dataset(cfg: RunConfig) -> DataBundle:
    return DATASETS[cfg.data.name](cfg)


def class_names(cfg: RunConfig) -> list[str]:
    return CLASS_NAMES[cfg.data.name](cfg)


__all__ = ["CLASS_NAMES", "DATASETS", "DataBundle", "Split", "build_dataset", "class_names"]
