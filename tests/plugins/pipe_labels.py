"""A dataset format with its own keys, in one file: image files under data.root listed in a CSV whose
`labels` column holds '|'-separated class names (data.separator), in data.labels_file."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from mhss_ray.data.folder import IMAGENET_MEAN, IMAGENET_STD, Part, make_bundle, root_folder, three_way
from mhss_ray.data.images import ImageReader
from mhss_ray.errors import UserError
from mhss_ray.registry import register_dataset


@dataclass
class PipeLabelsParams:
    labels_file: str = "labels.csv"  # under data.root: columns file, labels
    separator: str = "|"


def read(cfg):
    path = root_folder(cfg) / cfg.data.labels_file
    if not path.is_file():
        raise UserError(f"data.labels_file: {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    names = [[c for c in row.split(cfg.data.separator) if c] for row in table["labels"]]
    classes = sorted({c for row in names for c in row})
    labels = np.array([[c in row for c in classes] for row in names], dtype=np.uint8)
    return path, list(table["file"]), classes, labels


def build(cfg):
    path, files, classes, labels = read(cfg)
    parts = three_way(Part(root_folder(cfg), pa.array(files, pa.string()), labels, path), cfg)
    return make_bundle(cfg, classes, parts, ImageReader(), IMAGENET_MEAN, IMAGENET_STD)


register_dataset(
    "pipe-labels", build, lambda cfg: read(cfg)[2], reads_files=True, keys=("root", "split", "split_seed"), params=PipeLabelsParams,
    summary="test only",
)  # fmt: skip
