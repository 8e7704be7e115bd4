"""Predictions of a trained run on images (`mhss-predict`): per image and class the probability and a
decision at the class's threshold (chosen on the validation split when the checkpoint was written: F1,
or F2 for a dataset with class weights such as Sewer-ML).

The images: a split of the run's own dataset (`train`, `val`, `test`), a folder of image files (searched
recursively), or a manifest (CSV or Parquet) with a column of file paths relative to its folder. The
network is the run's first one (its EMA when on), the files are read and transformed as the run's
evaluation images (same reader, bands, size and normalisation), so the run's dataset must be where its
config says (its class names, bands and statistics come from there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from torch.utils.data import DataLoader, Dataset

from ..data.images import ImageFiles
from ..errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "val", "test")


def _files_of(folder: Path) -> list[str]:
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise UserError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return names


def _files_of_manifest(path: Path, column: str) -> list[str]:
    from ..data.tables import read_table

    table = read_table(path)
    if column not in table.column_names:
        raise UserError(f"--images {path}: no column {column!r} (the image files; data.file_column of the run)")
    names = [str(n) for n in table.column(column).to_pylist() if n is not None and str(n).strip()]
    if not names:
        raise UserError(f"--images {path}: column {column!r} names no file")
    return names


def images_to_predict(evaluator, spec: str) -> tuple[Dataset, list[str], np.ndarray | None]:
    """(dataset, image names, labels where known) for `--images`."""
    if spec in SPLITS:
        split = getattr(evaluator.data, spec)
        images = split.images.evaluation_view() if spec == "train" else split.images
        names = [images.path(i) if hasattr(images, "path") else f"{spec} row {i}" for i in range(len(split))]
        return images, names, split.labels
    path = Path(spec).expanduser()
    template = evaluator.data.test.images
    if not isinstance(template, ImageFiles):
        if not path.is_dir():
            raise UserError(
                f"--images {spec}: a model of {evaluator.cfg.data.name} (built in memory) predicts one of its splits or a folder of images"
            )
        names = _files_of(path)
        dataset = _in_memory_like(template, path, names, evaluator.data.in_chans, evaluator.cfg.data.image_size)
        return dataset, [str(path / n) for n in names], None
    if path.is_dir():
        folder, names = path, _files_of(path)
    elif path.is_file() and path.suffix.lower() in (".csv", ".parquet"):
        folder, names = path.parent, _files_of_manifest(path, evaluator.cfg.data.file_column)
    else:
        raise UserError(f"--images {spec}: expected train, val, test, a folder of images or a manifest (.csv, .parquet)")
    dataset = ImageFiles(folder, pa.array(names, pa.string()), template.reader, template.transforms, template.size)
    return dataset, [str(folder / n) for n in names], None


def _in_memory_like(template, folder: Path, names: list[str], channels: int, size: int) -> Dataset:
    """Image files as a model trained on an in-memory dataset sees its images: `channels` bands (RGB or
    grey), `size` x `size` pixels, its normalisation."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from ..data.base import InMemoryImages

    if channels not in (1, 3):
        raise UserError(f"--images {folder}: the model reads {channels} bands; image files give 1 (grey) or 3 (RGB)")
    arrays = []
    for name in names:
        try:
            with Image.open(folder / name) as image:
                image = image.convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(image, dtype=np.uint8).reshape(size, size, channels))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{folder / name}: cannot decode image ({str(exc).splitlines()[0][:120]})") from None
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return InMemoryImages(images, template.mean, template.std)


def predict(evaluator, dataset: Dataset, log=None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x C, the rows they belong to): undecodable files stop it with their name, or are
    left out with `data.on_bad_image: skip` (as in training)."""
    cfg = evaluator.cfg.data
    loader = DataLoader(dataset, batch_size=cfg.batch_size * 2, shuffle=False, num_workers=cfg.num_workers)
    probs, rows = evaluator.predict(loader, log=log)
    if len(rows) == 0:
        raise UserError("--images: no image could be read")
    return probs, rows


def prediction_table(names: list[str], rows: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per image: image, then per class p_<class> (the probability) and pred_<class> (the decision, 0 or 1)."""
    table = {"image": [names[r] for r in rows]}
    for c, name in enumerate(classes):
        table[f"p_{name}"] = probs[:, c]
        table[f"pred_{name}"] = (probs[:, c] >= thresholds[c]).astype(np.uint8)
    return pd.DataFrame(table)


def thresholds_table(thresholds: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The per-class thresholds behind the decisions (chosen on the validation split)."""
    return pd.DataFrame({"class": classes, "threshold": np.asarray(thresholds, dtype=float)})


def metrics_table(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per class and their mean (the last row, `mean`): AP (from the probabilities) and precision, recall and F1
    of the decisions; AP is empty for a class without positive images."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    decided = probs >= thresholds
    rows = []
    for c, name in enumerate(classes):
        ap = float(average_precision_score(labels[:, c], probs[:, c])) * 100 if labels[:, c].any() else np.nan
        p, r, f, _ = precision_recall_fscore_support(labels[:, c], decided[:, c], average="binary", zero_division=0)
        rows.append({"class": name, "positives": int(labels[:, c].sum()), "AP": ap, "precision": p, "recall": r, "F1": f})
    table = pd.DataFrame(rows)
    mean = {"class": "mean", "positives": int(labels.sum()), **{k: float(table[k].mean()) for k in ("AP", "precision", "recall", "F1")}}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def beside(out: Path, what: str) -> Path:
    """A companion file of the prediction table: predictions.parquet -> predictions.<what>.csv."""
    return out.with_name(f"{out.stem}.{what}.csv")
