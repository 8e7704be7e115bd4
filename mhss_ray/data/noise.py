"""Synthetic label noise, injected into the training labels only (METHODS.md section 9).

Every injector is seeded, returns the noisy labels, the noise mask and the realised entry-level rates
epsilon_c (the fraction of column c whose observed label differs from the clean one), and never
modifies the clean labels it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import NoiseConfig


@dataclass
class NoisyLabels:
    labels: np.ndarray  # N x C uint8, what the method observes
    mask: np.ndarray  # N x C bool, True where the observed label differs from the clean one
    rates: np.ndarray  # C float, realised epsilon_c


def _result(clean: np.ndarray, noisy: np.ndarray) -> NoisyLabels:
    mask = noisy != clean
    return NoisyLabels(noisy, mask, mask.mean(axis=0))


def inject_naive(clean: np.ndarray, rate: float, rng: np.random.Generator) -> NoisyLabels:
    """Class-wise mixed noise: for every class, flip floor(rate * |pos_c|) random positives to 0
    (omissions) and as many random negatives to 1 (additions)."""
    noisy = clean.copy()
    for c in range(clean.shape[1]):
        pos = np.flatnonzero(clean[:, c] == 1)
        neg = np.flatnonzero(clean[:, c] == 0)
        k = min(int(np.floor(rate * len(pos))), len(neg))
        noisy[rng.choice(pos, k, replace=False), c] = 0
        noisy[rng.choice(neg, k, replace=False), c] = 1
    return _result(clean, noisy)


def inject_noise(cfg: NoiseConfig, clean: np.ndarray, run_seed: int) -> NoisyLabels:
    rng = np.random.default_rng([cfg.seed if cfg.seed is not None else run_seed, 9001])
    if cfg.mode == "none":
        return _result(clean, clean.copy())
    if cfg.mode == "naive":
        return inject_naive(clean, cfg.rate, rng)
    raise ValueError(f"unknown noise mode {cfg.mode!r}")  # the config validation rules this out
