"""TreeSatAI aerial 60 m patches (DATASETS.md): `aerial/60m/<name>.tif` (4 bands IR, G, B, R), labels
`labels/TreeSatBA_v9_60m_multi_labels.json` ({name: [[genus, share], ...]}, a genus counts when its
share >= `data.label_threshold`), splits `train_filenames.lst` / `test_filenames.lst`; the
validation split is carved from train (`data.val_fraction`). `data.bands` picks the input bands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import RunConfig
from ..registry import register_dataset
from ..errors import UserError
from .base import DataBundle
from .files import check_files
from .folder import IMAGENET_MEAN, IMAGENET_STD, Part, carve_validation, make_bundle, root_folder
from .images import ImageReader
from .tables import require_file

# the genera of the TreeSatAI release (its multi-label JSON), sorted
TREESAT_GENERA = [
    "Abies", "Acer", "Alnus", "Betula", "Cleared", "Fagus", "Fraxinus", "Larix", "Picea", "Pinus", "Populus", "Prunus",
    "Pseudotsuga", "Quercus", "Tilia",
]  # fmt: skip

LABEL_FILE = "labels/TreeSatBA_v9_60m_multi_labels.json"
IMAGES = "aerial/60m"
SPLIT_FILES = {"train": "train_filenames.lst", "test": "test_filenames.lst"}
FILE_BANDS = ("IR", "G", "B", "R")  # the order of the samples in each TIFF
# ImageNet's statistics for the visible bands (what pretrained backbones expect); infrared: mid-grey
BAND_MEAN = {"R": IMAGENET_MEAN[0], "G": IMAGENET_MEAN[1], "B": IMAGENET_MEAN[2], "IR": 0.5}
BAND_STD = {"R": IMAGENET_STD[0], "G": IMAGENET_STD[1], "B": IMAGENET_STD[2], "IR": 0.25}


def read_labels(root: Path) -> dict[str, list]:
    path = require_file(root / LABEL_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object {{image name: [[genus, share], ...]}}")
    for name, pairs in data.items():
        ok = isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], (int, float)) and not isinstance(p[1], bool)
            for p in pairs
        )
        if not ok:
            raise UserError(f"{path}: entry {name!r}: expected [[genus, share], ...], got {str(pairs)[:80]}")
        for genus, share in pairs:
            if not (math.isfinite(share) and 0 <= share <= 1):  # json reads NaN and Infinity too
                raise UserError(f"{path}: entry {name!r}: genus {genus!r} has area share {share}, expected a number in [0, 1]")
    return data


def genera(labels: dict[str, list]) -> list[str]:
    return sorted({genus for pairs in labels.values() for genus, _ in pairs})


def class_names(cfg: RunConfig) -> list[str]:
    return genera(read_labels(root_folder(cfg)))


def read_split(root: Path, split: str, labels: dict[str, list]) -> tuple[Path, list[str]]:
    path = require_file(root / SPLIT_FILES[split])
    names, first_line = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name not in labels:
            raise UserError(f"{path} line {number}: unknown image {name!r} (not in {LABEL_FILE})")
        if name in first_line:
            raise UserError(f"{path} line {number}: image {name!r} is listed again (first at line {first_line[name]})")
        first_line[name] = number
        names.append(name)
    return path, names


def label_rows(names: list[str], labels: dict[str, list], classes: list[str], threshold: float) -> np.ndarray:
    index = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(names), len(classes)), dtype=np.uint8)
    for i, name in enumerate(names):
        for genus, share in labels[name]:
            if share >= threshold:
                out[i, index[genus]] = 1
    return out


def build(cfg: RunConfig) -> DataBundle:
    root = root_folder(cfg)
    labels = read_labels(root)
    classes = genera(labels)
    parts = {}
    for split in SPLIT_FILES:
        path, names = read_split(root, split, labels)
        files = pa.array(names, pa.string())
        if names:
            check_files(files, root / IMAGES, path, follow_links=cfg.data.follow_links)
        parts[split] = Part(root / IMAGES, files, label_rows(names, labels, classes, cfg.data.label_threshold), path)
    train, val = carve_validation(parts["train"], cfg)
    bands = cfg.data.bands
    reader = ImageReader(tuple(FILE_BANDS.index(b) for b in bands))
    mean, std = [BAND_MEAN[b] for b in bands], [BAND_STD[b] for b in bands]
    return make_bundle(cfg, classes, (train, val, parts["test"]), reader, mean, std)


register_dataset(
    "treesat",
    build,
    class_names,
    reads_files=True,
    keys=("root", "label_threshold", "bands", "val_fraction", "split_seed"),
    summary="TreeSatAI aerial 60 m patches (4-band TIFF) and their genus labels",
    published_classes=tuple(TREESAT_GENERA),
)
