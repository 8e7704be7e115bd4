"""digits-mosaic, the built-in dataset (DATASETS.md): g x g mosaics of scikit-learn's 8x8 digits.

The 1,797 base digits are split into train/val/test first and each mosaic is composed from its own
split only, so no handwritten digit appears in two splits. Each tile is blank with `blank_prob`, else
a digit whose class is drawn from a Zipf-like prior p_c ~ 1/(c+1)^s (classes imbalanced on purpose,
like sewer defects). The labels are the set of digit classes present. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig
from ..registry import register_dataset
from .base import DataBundle, InMemoryImages, Split
from .views import UInt8RandAugment

NUM_CLASSES = 10
TILE = 8
MEAN, STD = 0.25, 0.35  # roughly the pixel statistics of the mosaics at the default blank rate
# Handwritten digits people and classifiers mix up: a true a reported as b with this chance.
CONFUSIONS = [
    ["1", "7", 0.2],
    ["7", "1", 0.2],
    ["4", "9", 0.2],
    ["9", "4", 0.2],
    ["3", "8", 0.15],
    ["8", "3", 0.15],
    ["5", "6", 0.1],
    ["6", "5", 0.1],
]


def class_prior(zipf_exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, NUM_CLASSES + 1) ** zipf_exponent
    return p / p.sum()


def split_base_digits(targets: np.ndarray, fractions: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of the base digits of each split, stratified by class so every split holds every digit."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(targets == c))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def compose(n: int, images: np.ndarray, targets: np.ndarray, cfg: DataConfig, rng: np.random.Generator):
    """n mosaics (uint8, n x 1 x g*8 x g*8, 0..255) and their labels (n x 10 uint8) from one split's digits."""
    g = cfg.grid
    tiles = g * g
    classes = rng.choice(NUM_CLASSES, size=(n, tiles), p=class_prior(cfg.zipf_exponent))
    blank = rng.random((n, tiles)) < cfg.blank_prob
    chosen = np.zeros((n, tiles), dtype=np.int64)
    for c in range(NUM_CLASSES):
        pool = np.flatnonzero(targets == c)
        where = classes == c
        chosen[where] = pool[rng.integers(0, len(pool), where.sum())]
    pix = images[chosen] * ~blank[..., None, None]  # n x tiles x 8 x 8, values 0..16
    mosaic = pix.reshape(n, g, g, TILE, TILE).transpose(0, 1, 3, 2, 4).reshape(n, g * TILE, g * TILE)
    labels = np.zeros((n, NUM_CLASSES), dtype=np.uint8)
    rows = np.repeat(np.arange(n), tiles)
    keep = ~blank.ravel()
    labels[rows[keep], classes.ravel()[keep]] = 1
    return (mosaic * (255.0 / 16.0)).round().astype(np.uint8)[:, None], labels


def upscale(images: np.ndarray, size: int) -> torch.Tensor:
    """Bilinear upsampling to the network input size, done once at build time, kept as uint8."""
    x = torch.from_numpy(images)
    if x.shape[-1] == size:
        return x
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def build(cfg: DataConfig, seed: int) -> DataBundle:
    from sklearn.datasets import load_digits  # scikit-learn's import takes a second: only where the data is built

    digits = load_digits()
    base_images = digits.images.astype(np.float64)
    targets = digits.target
    parts = split_base_digits(targets, cfg.base_split, np.random.default_rng([seed, 0]))
    splits = []
    for k, (idx, n) in enumerate(zip(parts, (cfg.n_train, cfg.n_val, cfg.n_test))):
        images, labels = compose(n, base_images[idx], targets[idx], cfg, np.random.default_rng([seed, k + 1]))
        augment = UInt8RandAugment(cfg.randaugment, 1, MEAN) if k == 0 and cfg.randaugment != "none" else None  # training only
        splits.append(Split(InMemoryImages(upscale(images, cfg.image_size), MEAN, STD, augment), labels))
    return DataBundle("digits-mosaic", [str(c) for c in range(NUM_CLASSES)], 1, *splits, confusions=CONFUSIONS)


register_dataset(
    "digits-mosaic",
    lambda cfg: build(cfg.data, cfg.seed),
    lambda cfg: [str(c) for c in range(NUM_CLASSES)],
    keys=("grid", "n_train", "n_val", "n_test", "base_split", "blank_prob", "zipf_exponent", "randaugment"),
    summary="the built-in dataset: g x g mosaics of scikit-learn's 8x8 digits, in memory",
)
