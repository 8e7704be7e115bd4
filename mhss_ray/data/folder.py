"""What the image-file loaders share: turning per-split file names and labels into a DataBundle.

Each loader (ucmerced, treesat, sewerml, manifest) reads its own formats and checks them; this
module checks what is common (empty splits, per-channel statistics, class weights, verified
labels) and attaches the decoders and transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import RunConfig
from ..errors import UserError
from .base import DataBundle, Split
from .decode_cache import AUTO, OFF, SplitCache, check_cache_dir
from .images import ImageFiles, ImageReader
from .splits import split_rows
from .tables import first_true, row_name
from .transforms import build_transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class Part:
    """One split: file names relative to `folder`, their labels, and where they were listed."""

    folder: Path
    names: pa.StringArray
    labels: np.ndarray
    source: Path  # the file that defined this split (for messages)

    def take(self, rows: np.ndarray) -> "Part":
        return Part(self.folder, self.names.take(pa.array(rows, pa.int64())), self.labels[rows], self.source)


def root_folder(cfg: RunConfig) -> Path:
    if not cfg.data.root:
        raise UserError(f"data.root: required for dataset {cfg.data.name} (the folder that holds it; --set data.root=PATH)")
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root: {root}: no such folder (a small one to try: python -m mhss_ray.data.fixtures {cfg.data.name} FOLDER)")
    return root


def carve_validation(train: Part, cfg: RunConfig) -> tuple[Part, Part]:
    """A seeded, stratified validation split from the training rows (`data.val_fraction`)."""
    keep, val = split_rows(train.labels, [1 - cfg.data.val_fraction, cfg.data.val_fraction], cfg.data.split_seed)
    return train.take(keep), train.take(val)


def three_way(part: Part, cfg: RunConfig) -> tuple[Part, Part, Part]:
    rows = split_rows(part.labels, cfg.data.split, cfg.data.split_seed)
    return tuple(part.take(r) for r in rows)


def channel_stats(cfg: RunConfig, chans: int, mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    mean, std = cfg.data.mean or mean, cfg.data.std or std
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != chans:
            raise UserError(f"data.{key}: expected {chans} values (one per input channel), got {len(values)}")
    return mean, std


def class_weights(cfg: RunConfig, class_names: list[str], default: dict | None = None) -> np.ndarray | None:
    given = cfg.data.class_weights if cfg.data.class_weights is not None else default
    if given is None:
        return None
    unknown = set(given) - set(class_names)
    if unknown:
        raise UserError(f"data.class_weights: unknown class {sorted(unknown)[0]!r} (classes: {', '.join(class_names)})")
    missing = [c for c in class_names if c not in given]
    if missing:
        raise UserError(f"data.class_weights: no weight for class {missing[0]!r} (give one per class)")
    return np.array([float(given[c]) for c in class_names])


def verified_labels(train: Part, names: pa.StringArray, labels: np.ndarray, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, their verified labels) for a clean-subset table; a name that is not a training
    image is an error naming its row (rows that went to the validation split are left out)."""
    if labels.shape[1] != train.labels.shape[1]:
        raise UserError(f"{source}: has {labels.shape[1]} classes, the dataset {train.labels.shape[1]}")
    where = pc.index_in(names, value_set=train.names).to_numpy(zero_copy_only=False)
    found = ~np.isnan(where) if where.dtype.kind == "f" else where >= 0
    return where[found].astype(np.int64), labels[found]


def check_known(names: pa.StringArray, universe: pa.StringArray, source: Path, what: str) -> None:
    unknown = ~pc.is_in(names, value_set=universe).to_numpy(zero_copy_only=False)
    if unknown.any():
        i = first_true(unknown)
        raise UserError(f"{row_name(source, i)}: {names[i].as_py()!r} is not {what}")


def check_disjoint(parts: tuple[Part, Part, Part]) -> None:
    """No image file in two splits (a test image seen in training inflates every test figure)."""
    named = list(zip(("train", "val", "test"), parts))
    for i, (split_a, a) in enumerate(named):
        for split_b, b in named[i + 1 :]:
            if a.folder != b.folder:
                continue  # per-split folders: equal names are different files
            both = pc.is_in(b.names, value_set=a.names).to_numpy(zero_copy_only=False)
            if both.any():
                name = b.names[first_true(both)].as_py()
                where = f"{a.source.name}" if a.source == b.source else f"{a.source.name} and {b.source.name}"
                raise UserError(f"{b.source}: image {name!r} is in both the {split_a} and the {split_b} split ({where})")


def decoded(cfg: RunConfig, part: Part, reader: ImageReader):
    """The split's decode cache when `data.cache_dir` names a folder (opened, or built, when training starts), else None."""
    where = cfg.data.cache_dir
    if where in (None, OFF, AUTO):  # AUTO unresolved: a library call that named no folder
        return None
    check_cache_dir(where, [cfg.data.root, part.folder])
    return SplitCache(where, cfg.data.name, str(part.folder), part.names, reader, cfg.data.image_size, cfg.data.num_workers)


def make_bundle(
    cfg: RunConfig,
    class_names: list[str],
    parts: tuple[Part, Part, Part],
    reader: ImageReader,
    mean: list[float],
    std: list[float],
    weights: np.ndarray | None = None,
    verified: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataBundle:
    for split, part in zip(("train", "val", "test"), parts):
        if len(part.names) == 0:
            raise UserError(f"{part.source}: the {split} split is empty")
    check_disjoint(parts)
    mean, std = channel_stats(cfg, reader.channels, mean, std)
    t = build_transforms(cfg.data, reader.channels, mean, std)
    size = cfg.data.image_size
    train, val, test = parts
    cache = [decoded(cfg, part, reader) for part in parts]
    splits = [
        Split(ImageFiles(train.folder, train.names, reader, [t.train], size, weak=t.weak, plain=t.eval, cache=cache[0]), train.labels),
        Split(ImageFiles(val.folder, val.names, reader, [t.eval], size, cache=cache[1]), val.labels),
        Split(ImageFiles(test.folder, test.names, reader, [t.eval], size, cache=cache[2]), test.labels),
    ]
    rows, labels = verified if verified is not None else (None, None)
    return DataBundle(
        cfg.data.name, class_names, reader.channels, *splits, class_weights=weights, verified_rows=rows, verified_labels=labels
    )
