"""Seeded splits for datasets that ship without one, stratified for multi-label data.

scikit-learn stratifies single labels; a multi-label image is stratified by its rarest label
(images without a label form their own stratum), so that rare classes land in every split.
Strata too small to spread fall back to one shared stratum.
"""

from __future__ import annotations

import numpy as np


def rarest_label(labels: np.ndarray) -> np.ndarray:
    counts = labels.sum(axis=0)
    weight = np.where(labels == 1, counts[None, :], np.iinfo(np.int64).max)
    key = weight.argmin(axis=1)
    return np.where(labels.any(axis=1), key, -1)


def _strata(labels: np.ndarray, smaller_part: int) -> np.ndarray | None:
    """Stratum of each row, or None where the parts are too small to hold every stratum."""
    key = rarest_label(labels)
    values, counts = np.unique(key, return_counts=True)
    key = np.where(np.isin(key, values[counts < 2]), -2, key)
    values, counts = np.unique(key, return_counts=True)
    return key if counts.min() >= 2 and len(values) <= smaller_part else None


def split_rows(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Row indices of each part (fractions sum to 1; a zero fraction gives an empty part), sorted."""
    from sklearn.model_selection import train_test_split  # scikit-learn's import takes a second: only where data is split

    rows = np.arange(len(labels))
    parts, rest, left = [], rows, 1.0
    for i, frac in enumerate(fractions[:-1]):
        share = frac / left if left > 0 else 0.0
        n = int(round(share * len(rest)))
        if n == 0 or n == len(rest):
            take, rest = (rest[:0], rest) if n == 0 else (rest, rest[:0])
        else:
            strata = _strata(labels[rest], min(n, len(rest) - n))
            take, rest = train_test_split(rest, train_size=n, random_state=seed + i, stratify=strata)
        parts.append(np.sort(take))
        left -= frac
    parts.append(np.sort(rest))
    return parts
