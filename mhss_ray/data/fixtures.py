"""Small datasets written in the exact on-disk formats of DATASETS.md (real PNG and TIFF files), for
the tests, the benchmarks and for seeing what a loader expects:

    python -m mhss_ray.data.fixtures sewerml /tmp/sewer-demo     # then data.root=/tmp/sewer-demo

Each image is noise with one bright square per positive class at a class-specific place, so a
network can learn something in a few epochs. Every writer returns the labels it wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .sewerml import CLASSES as SEWER_CODES
from .treesat import TREESAT_GENERA
from .ucmerced import UCMERCED_CLASSES


def random_labels(n: int, c: int, rng: np.random.Generator, p: float = 0.25) -> np.ndarray:
    labels = (rng.random((n, c)) < p).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, c, n)] = 1  # at least one label each
    return labels


def draw(labels_row: np.ndarray, size: int, chans: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 80, (size, size, chans), dtype=np.uint8)
    cells = int(np.ceil(np.sqrt(len(labels_row))))
    step = size // cells
    for c in np.flatnonzero(labels_row):
        y, x = divmod(int(c), cells)
        img[y * step : (y + 1) * step, x * step : (x + 1) * step] = 255
    return img


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path)


def write_ucmerced(root: Path, scenes: int = 3, per_scene: int = 10, size: int = 32, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Images/<scene>/<scene>NN.tif (RGB TIFF) and LandUse_Multilabeled.txt."""
    rng = np.random.default_rng(seed)
    names = [f"scene{chr(97 + s)}{i:02d}" for s in range(scenes) for i in range(per_scene)]
    labels = random_labels(len(names), len(UCMERCED_CLASSES), rng)
    for name, row in zip(names, labels):
        path = root / "Images" / name.rstrip("0123456789") / f"{name}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, draw(row, size, 3, rng), photometric="rgb")
    lines = ["\t".join(["IMAGE\\LABEL", *UCMERCED_CLASSES])] + ["\t".join([n, *map(str, r)]) for n, r in zip(names, labels)]
    (root / "LandUse_Multilabeled.txt").write_text("\n".join(lines) + "\n")
    return names, labels


def write_treesat(root: Path, n_train: int = 24, n_test: int = 8, size: int = 32, seed: int = 0) -> tuple[dict, list[str], list[str]]:
    """aerial/60m/<name>.tif (4 planar bands IR, G, B, R), the labels JSON with area shares, split lists.
    Returns ({name: [[genus, share], ...]}, train names, test names); each band holds its index * 50
    in the top-left pixel so tests can tell the bands apart."""
    rng = np.random.default_rng(seed)
    names = [f"{g}_{i}_2011_WEFL_NLF.tif" for i, g in enumerate(rng.choice(TREESAT_GENERA, n_train + n_test))]
    shares = {}
    for name in names:
        k = int(rng.integers(1, 4))
        genera = rng.choice(TREESAT_GENERA, k, replace=False)
        share = rng.dirichlet(np.ones(k))
        shares[name] = [[str(g), round(float(s), 3)] for g, s in zip(genera, share)]
    for name in names:
        img = rng.integers(0, 200, (4, size, size), dtype=np.uint8)
        img[:, 0, 0] = [0, 50, 100, 150]  # IR, G, B, R markers
        path = root / "aerial" / "60m" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, img, photometric="minisblack", planarconfig="separate")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(shares))
    train, test = names[:n_train], names[n_train:]
    (root / "train_filenames.lst").write_text("\n".join(train) + "\n")
    (root / "test_filenames.lst").write_text("\n".join(test) + "\n")
    return shares, train, test


def sewer_csv(names: list[str], labels: np.ndarray) -> str:
    header = ["Filename", *SEWER_CODES, "VA", "ND", "Defect", "WaterLevel"]
    rows = [",".join(header)]
    for name, row in zip(names, labels):
        defect = int(row.any())
        rows.append(",".join([name, *map(str, row), "0", str(1 - defect), str(defect), "10"]))
    return "\n".join(rows) + "\n"


def write_sewerml(root: Path, n_train: int = 30, n_val: int = 10, size: int = 32, per_split_folders: bool = False, seed: int = 0) -> dict:
    """SewerML_Train.csv / SewerML_Val.csv and PNG images (flat, or in Train/ and Val/).
    A third of the images are normal (no defect). Returns {split: (names, labels)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n, folder in (("Train", n_train, "Train"), ("Val", n_val, "Val")):
        names = [f"{split.lower()}_{i:05d}.png" for i in range(n)]
        labels = random_labels(n, len(SEWER_CODES), rng, p=0.1)
        labels[::3] = 0
        for name, row in zip(names, labels):
            write_png((root / folder if per_split_folders else root) / name, draw(row, size, 3, rng))
        (root / f"SewerML_{split}.csv").write_text(sewer_csv(names, labels))
        out[split] = (names, labels)
    return out


def write_manifest(
    root: Path,
    n: int = 36,
    size: int = 32,
    classes: tuple[str, ...] = ("crack", "root", "deposit", "joint"),
    fmt: str = "csv",
    label_list: bool = False,
    with_split: bool = True,
    seed: int = 0,
):
    """images/img_NNN.png and manifest.csv / manifest.parquet: file, 0/1 class columns or one
    ';'-separated `labels` column, and optionally a train/val/test `split` column."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    files = [f"images/img_{i:03d}.png" for i in range(n)]
    labels = random_labels(n, len(classes), rng, p=0.3)
    for f, row in zip(files, labels):
        write_png(root / f, draw(row, size, 3, rng))
    table = {"file": files}
    if label_list:
        table["labels"] = [";".join(c for c, y in zip(classes, row) if y) for row in labels]
    else:
        table.update({c: labels[:, j] for j, c in enumerate(classes)})
    if with_split:
        table["split"] = np.array(["train", "train", "train", "val", "test", "train"])[np.arange(n) % 6]
    frame = pd.DataFrame(table)
    path = root / f"manifest.{fmt}"
    frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
    return files, labels, frame


WRITERS = {"ucmerced": write_ucmerced, "treesat": write_treesat, "sewerml": write_sewerml, "manifest": write_manifest}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a small dataset in one of the supported on-disk formats.")
    parser.add_argument("format", choices=sorted(WRITERS))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    WRITERS[args.format](args.folder)
    print(f"wrote a small {args.format} dataset to {args.folder}; use it with data.name={args.format} data.root={args.folder}")


if __name__ == "__main__":
    main()
