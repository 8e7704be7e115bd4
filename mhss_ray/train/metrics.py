"""Evaluation metrics on clean labels (METHODS.md section 10)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def average_precision_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ASL's average precision of every column: the mean, over the positives, of the precision at
    each positive's rank (scores sorted descending, ties kept in input order). NaN for a class with
    no positive. Equals scikit-learn's average_precision_score when scores have no ties."""
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = np.take_along_axis(targets.astype(np.float64), order, axis=0)
    ranks = np.arange(1, len(scores) + 1, dtype=np.float64)[:, None]
    precision_at_hit = np.cumsum(hits, axis=0) / ranks * hits
    positives = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, precision_at_hit.sum(axis=0) / positives, np.nan)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP x 100 over the classes that have a positive."""
    return float(np.nanmean(average_precision_per_class(scores, targets)) * 100)


def classification_metrics(probs: np.ndarray, targets: np.ndarray, class_names: list[str], prefix: str) -> dict[str, float]:
    """mAP, per-class AP and micro/macro F1 at 0.5, as flat `prefix_...` keys (x100)."""
    ap = average_precision_per_class(probs, targets)
    pred = (probs >= 0.5).astype(np.uint8)
    out = {
        f"{prefix}_mAP": float(np.nanmean(ap) * 100),
        f"{prefix}_f1_micro": float(f1_score(targets, pred, average="micro", zero_division=0) * 100),
        f"{prefix}_f1_macro": float(f1_score(targets, pred, average="macro", zero_division=0) * 100),
    }
    out.update({f"{prefix}_AP_{name}": float(v * 100) for name, v in zip(class_names, ap)})
    return out
