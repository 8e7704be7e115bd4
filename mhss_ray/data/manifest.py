"""A user's own inspection database (DATASETS.md): `manifest.csv` or `manifest.parquet` in
`data.root` with a file column (paths relative to the root), either one 0/1 column per class or one
column of ';'-separated class names (`data.labels_column`), and an optional split column
(train/val/test). Without a split column the split is seeded and stratified (`data.split`); with
one that names no validation rows, validation is carved from train (`data.val_fraction`).
`noise.clean_subset` may name a second manifest of verified labels (same columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import RunConfig
from ..registry import register_dataset
from ..errors import UserError
from .base import DataBundle
from .files import check_files
from .folder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Part,
    carve_validation,
    check_known,
    class_weights,
    make_bundle,
    root_folder,
    three_way,
    verified_labels,
)
from .images import ImageReader
from .tables import first_true, label_matrix, read_table, require_file, row_name, split_labels, file_column

SPLITS = ("train", "val", "test")


def manifest_path(cfg: RunConfig) -> Path:
    root = root_folder(cfg)
    if cfg.data.manifest:
        return require_file(root / cfg.data.manifest)
    for name in ("manifest.csv", "manifest.parquet"):
        if (root / name).is_file():
            return root / name
    raise UserError(f"data.root: {root} holds no manifest.csv or manifest.parquet (or name the file with data.manifest)")


def read_manifest(path: Path, cfg: RunConfig, classes: list[str] | None = None) -> tuple[pa.Table, pa.StringArray, list[str], np.ndarray]:
    """(table, file names, class names, N x C labels) of a manifest file."""
    d = cfg.data
    text = tuple(c for c in (d.file_column, d.split_column, d.labels_column) if c)
    table = read_table(require_file(path), text_columns=text)
    names = file_column(table, d.file_column, path)
    classes = classes or d.classes
    if d.labels_column:
        if d.labels_column not in table.column_names:
            raise UserError(f"{path}: no column {d.labels_column!r} (data.labels_column; columns: {', '.join(table.column_names[:30])})")
        classes, labels = split_labels(table.column(d.labels_column).cast(pa.string()).combine_chunks(), classes, path, d.labels_column)
    else:
        if classes is None:
            classes = [c for c in table.column_names if c not in (d.file_column, d.split_column)]
        if not classes:
            raise UserError(f"{path}: no class columns besides {d.file_column!r} (or set data.labels_column)")
        labels = label_matrix(table, classes, path)
    return table, names, classes, labels


def class_names(cfg: RunConfig) -> list[str]:
    d = cfg.data
    if d.classes and not d.labels_column:
        return list(d.classes)
    return read_manifest(manifest_path(cfg), cfg)[2]


def split_of_rows(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """The split column as codes 0/1/2 (train/val/test); any other value names its row."""
    values = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(table.column(column).cast(pa.string()), "")))
    code = pc.index_in(values, value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False)
    bad = np.isnan(code) if code.dtype.kind == "f" else code < 0
    if bad.any():
        i = first_true(bad)
        raise UserError(f"{row_name(path, i)}: column {column!r} holds {table.column(column)[i].as_py()!r} (expected train, val or test)")
    return code.astype(np.int64)


def build(cfg: RunConfig) -> DataBundle:
    root = root_folder(cfg)
    path = manifest_path(cfg)
    table, names, classes, labels = read_manifest(path, cfg)
    check_files(names, root, path, follow_links=cfg.data.follow_links)
    everything = Part(root, names, labels, path)
    if cfg.data.split_column in table.column_names:
        code = split_of_rows(table, cfg.data.split_column, path)
        train, val, test = (everything.take(np.flatnonzero(code == k)) for k in range(3))
        if len(val.names) == 0 and len(train.names) > 0:
            train, val = carve_validation(train, cfg)
    else:
        train, val, test = three_way(everything, cfg)
    verified = None
    if cfg.noise.clean_subset:
        sub = Path(cfg.noise.clean_subset).expanduser()
        sub = sub if sub.is_absolute() else root / sub
        _, sub_names, _, sub_labels = read_manifest(sub, cfg, classes)
        check_known(sub_names, names, sub, f"an image of {path.name}")
        verified = verified_labels(train, sub_names, sub_labels, sub)
    return make_bundle(cfg, classes, (train, val, test), ImageReader(), IMAGENET_MEAN, IMAGENET_STD, class_weights(cfg, classes), verified)


register_dataset(
    "manifest",
    build,
    class_names,
    reads_files=True,
    keys=(
        "root",
        "manifest",
        "file_column",
        "labels_column",
        "split_column",
        "classes",
        "split",
        "val_fraction",
        "split_seed",
        "class_weights",
    ),
    summary="your own inspection database: a CSV or Parquet manifest of image files and labels",
)
