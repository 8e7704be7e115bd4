"""Evaluation metrics on clean labels (METHODS.md section 10)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, fbeta_score


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


def f2_ciw(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray, threshold: float = 0.5) -> float:
    """Sewer-ML's class-importance-weighted F2 (x100): per-class F2 at `threshold`, averaged with the
    weights. A class that is never predicted, or has no positive, scores 0 (scikit-learn's
    zero_division=0)."""
    pred = (probs >= threshold).astype(np.uint8)
    f2 = fbeta_score(targets, pred, beta=2, average=None, zero_division=0)
    return float(np.sum(weights * f2) / np.sum(weights) * 100)


def f1_normal(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Sewer-ML's F1 of the implicit "normal" class (x100): an image is normal when it has no defect
    label, predicted normal when no class reaches `threshold`."""
    normal = (targets.sum(axis=1) == 0).astype(np.uint8)
    predicted = ((probs >= threshold).sum(axis=1) == 0).astype(np.uint8)
    return float(f1_score(normal, predicted, zero_division=0) * 100)


def sewer_metrics(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray, prefix: str) -> dict[str, float]:
    return {f"{prefix}_F2_CIW": f2_ciw(probs, targets, weights), f"{prefix}_F1_normal": f1_normal(probs, targets)}


def best_thresholds(probs: np.ndarray, targets: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """Per class, the decision threshold that maximises F-beta on (probs, targets) (the validation split):
    F1 by default, F2 (beta 2) where recall weighs more (Sewer-ML). A class without a positive keeps 0.5."""
    from sklearn.metrics import precision_recall_curve

    out = np.full(probs.shape[1], 0.5)
    for c in range(probs.shape[1]):
        if targets[:, c].sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(targets[:, c], probs[:, c])
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
        f = np.nan_to_num(f[:-1])  # the last point has no threshold
        if len(f):
            out[c] = float(thresholds[int(np.argmax(f))])
    return out
