"""Sewer-ML (DATASETS.md): `SewerML_Train.csv` / `SewerML_Val.csv` (`Filename`, the 17 defect codes,
`VA`, `ND`, `Defect`, `WaterLevel`), PNG images in the root folder or in per-split folders.

The labels are the inspectors' (real noise). The validation split is carved from the training CSV
(`data.val_fraction`) and `SewerML_Val.csv` is the test split (the official test labels are not
public). `noise.clean_subset` names a CSV of the same format holding verified labels of some
training images: selection and correction metrics are computed on those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import RunConfig
from ..registry import register_dataset
from ..errors import UserError
from .base import DataBundle
from .files import check_files, list_files, missing_mask
from .folder import Part, carve_validation, check_known, class_weights, make_bundle, root_folder, verified_labels
from .images import ImageReader
from .tables import label_matrix, read_table, require_file, file_column

CLASS_WEIGHTS = {
    "RB": 1.0000, "OB": 0.5518, "PF": 0.2896, "DE": 0.1622, "FS": 0.6419, "IS": 0.1847, "RO": 0.3559, "IN": 0.3131, "AF": 0.0811,
    "BE": 0.2275, "FO": 0.2477, "GR": 0.0901, "PH": 0.4167, "PB": 0.4167, "OS": 0.9009, "OP": 0.3829, "OK": 0.4396,
}  # fmt: skip
CLASSES = list(CLASS_WEIGHTS)
MEAN, STD = [0.523, 0.453, 0.345], [0.210, 0.199, 0.154]
CSV = {"train": "SewerML_Train.csv", "test": "SewerML_Val.csv"}
SPLIT_FOLDERS = {"train": ("Train", "train", "Training", "training"), "test": ("Val", "val", "Validation", "validation")}


def class_names(cfg: RunConfig) -> list[str]:
    root_folder(cfg)  # fixed codes, but a study should not start on a folder that is not there
    return list(CLASSES)


def read_csv(path: Path) -> tuple[pa.StringArray, np.ndarray]:
    table = read_table(require_file(path), text_columns=("Filename",), label_columns=tuple(CLASSES))
    return file_column(table, "Filename", path), label_matrix(table, CLASSES, path)


def image_folder(root: Path, split: str, names: pa.StringArray, csv: Path, follow_links: bool = False) -> Path:
    """The folder of a split's images: the root itself or a per-split folder, whichever holds them;
    it is listed once and every name checked against the listing."""
    candidates = [root] + [root / f for f in SPLIT_FOLDERS[split] if (root / f).is_dir()]
    for folder in candidates:
        escapes: dict[str, str] = {}
        listing = list_files(folder, follow_links, escapes)
        if not missing_mask(names.slice(0, 1), listing).any():
            check_files(names, folder, csv, listing, follow_links, escapes)
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise UserError(f"{csv} line 2: image {names[0].as_py()!r} not found (looked in {tried})")


def build(cfg: RunConfig) -> DataBundle:
    root = root_folder(cfg)
    parts = {}
    for split, name in CSV.items():
        path = root / name
        names, labels = read_csv(path)
        if len(names) == 0:
            raise UserError(f"{path}: the {split} split is empty")
        parts[split] = Part(image_folder(root, split, names, path, cfg.data.follow_links), names, labels, path)
    verified = None
    if cfg.noise.clean_subset:
        path = Path(cfg.noise.clean_subset).expanduser()
        path = path if path.is_absolute() else root / path
        names, labels = read_csv(path)
        check_known(names, parts["train"].names, path, f"an image of {CSV['train']}")
    train, val = carve_validation(parts["train"], cfg)
    if cfg.noise.clean_subset:
        verified = verified_labels(train, names, labels, path)
    weights = class_weights(cfg, CLASSES, CLASS_WEIGHTS)
    return make_bundle(cfg, CLASSES, (train, val, parts["test"]), ImageReader(), MEAN, STD, weights, verified)


register_dataset(
    "sewerml",
    build,
    class_names,
    reads_files=True,
    keys=("root", "val_fraction", "split_seed", "class_weights"),
    weighted_metrics=True,
    summary="Sewer-ML CCTV frames and their 17 defect codes (real noise)",
    published_classes=tuple(CLASSES),
)
