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


def planned_class_names(cfg: RunConfig) -> tuple[list[str], str]:
    """(class names, warning) for a plan (`mhss-tune --dry-run`): where the dataset folder is absent, the classes
    the dataset publishes (the paper datasets), with a warning line; anything else as `class_names`."""
    from pathlib import Path

    from ..errors import UserError

    try:
        return class_names(cfg), ""
    except UserError as exc:
        if not cfg.data.root or Path(cfg.data.root).expanduser().is_dir():
            raise
        published = DATASETS.get(cfg.data.name).published_classes  # a published dataset's classes (its registry entry)
        if not published:
            raise
        return list(published), f"warning: {exc}; the plan assumes the {len(published)} published classes of {cfg.data.name}"


__all__ = ["DataBundle", "Split", "build_dataset", "class_names", "planned_class_names"]
