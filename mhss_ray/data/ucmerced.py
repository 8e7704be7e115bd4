"""UcMerced multi-label (DATASETS.md): `Images/<scene>/<scene>NN.tif` and the tab-separated
`LandUse_Multilabeled.txt` (header `IMAGE\\LABEL` + 17 class names). No official split: a seeded,
stratified one (`data.split`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from ..config import RunConfig
from ..registry import register_dataset
from ..errors import UserError
from .base import DataBundle
from .files import check_files
from .folder import IMAGENET_MEAN, IMAGENET_STD, Part, make_bundle, root_folder, three_way
from .images import ImageReader
from .tables import label_matrix, read_table, require_file, file_column

# the 17 labels of the UcMerced multi-label release (LandUse_Multilabeled.txt), in its column order
UCMERCED_CLASSES = [
    "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field", "grass",
    "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
]  # fmt: skip

LABEL_FILE = "LandUse_Multilabeled.txt"
IMAGES = "Images"


def header(path: Path) -> list[str]:
    require_file(path)
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        fields = [h.strip() for h in f.readline().rstrip("\r\n").split("\t")]
    if len(fields) < 2 or any(not h for h in fields):
        raise UserError(f"{path} line 1: expected a tab-separated header 'IMAGE\\LABEL' + class names, got {fields[:4]}")
    return fields


def class_names(cfg: RunConfig) -> list[str]:
    return header(root_folder(cfg) / LABEL_FILE)[1:]


def build(cfg: RunConfig) -> DataBundle:
    root = root_folder(cfg)
    path = root / LABEL_FILE
    columns = header(path)
    table = read_table(path, delimiter="\t", text_columns=(columns[0],))
    classes = columns[1:]
    labels = label_matrix(table, classes, path)
    names = file_column(table, columns[0], path)
    # agricultural00 -> agricultural/agricultural00.tif under Images/
    files = pc.replace_substring_regex(names, r"^(.*?)(\d+)$", r"\1/\1\2.tif")
    check_files(files, root / IMAGES, path, follow_links=cfg.data.follow_links)
    parts = three_way(Part(root / IMAGES, files, labels, path), cfg)
    return make_bundle(cfg, classes, parts, ImageReader(), IMAGENET_MEAN, IMAGENET_STD)


register_dataset(
    "ucmerced",
    build,
    class_names,
    reads_files=True,
    keys=("root", "split", "split_seed"),
    summary="UcMerced multi-label: Images/<scene>/*.tif and LandUse_Multilabeled.txt",
    published_classes=tuple(UCMERCED_CLASSES),
)
