"""Datasets, registered by name (registry.register_dataset): each dataset module registers its builder,
its class-name reader and its capabilities. A new dataset format is one module here and one line in
the import list below."""

from __future__ import annotations

from ..config import RunConfig
from ..registry import DATASETS
from . import digits_mosaic, ucmerced, treesat, sewerml, manifest  # noqa: F401  (each registers itself; this order is the listed order)
from .base import DataBundle, Split


def build_dataset(cfg: RunConfig) -> DataBundle:
    return DATASETS.get(cfg.data.name).build(cfg)


def class_names(cfg: RunConfig) -> list[str]:
    """Read no more than the label file (search spaces expand per-class dimensions from it)."""
    return DATASETS.get(cfg.data.name).class_names(cfg)


__all__ = ["DataBundle", "Split", "build_dataset", "class_names"]
