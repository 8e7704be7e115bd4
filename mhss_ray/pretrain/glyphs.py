"""Formula-driven glyphs for pretraining without a hub (formula-driven supervised learning, after Kataoka et
al., ACCV 2020, "Pre-training without Natural Images", with Bezier strokes in place of fractals): each
category is a random glyph of 1-3 quadratic Bezier strokes; an instance jitters its control points, its
stroke width and its size; an image shows 1-4 instances of random categories at random places, labelled
with the set of categories present. No category is a letter, a digit or a defect: what transfers is the
vocabulary of soft strokes at the scale of the frames, and recognising several objects in one frame.

Drawn at half the image side (a glyph on about 8 px, with 4x supersampling) and upsampled bilinearly, as
low-resolution frames are. Everything comes from one seed: the same arguments give the same images."""

from __future__ import annotations

import numpy as np

SUPER = 4  # supersampling of a glyph's cell
GLYPH = 8  # px of a glyph's cell at the drawing scale (half the image side)


def categories(n: int, seed: int) -> list[np.ndarray]:
    """n glyphs, each an array of strokes x 3 control points x 2 (in [0.05, 0.95]^2)."""
    rng = np.random.default_rng([seed, 1])
    return [rng.uniform(0.05, 0.95, size=(int(rng.integers(1, 4)), 3, 2)) for _ in range(n)]


def _glyph(strokes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One instance on a GLYPH x GLYPH cell, intensities in [0, 1]: jittered control points and width."""
    side = GLYPH * SUPER
    pts = strokes + rng.normal(0, 0.05, strokes.shape)
    t = np.linspace(0, 1, 48)[:, None]
    curve = ((1 - t) ** 2)[None] * pts[:, None, 0] + (2 * (1 - t) * t)[None] * pts[:, None, 1] + (t**2)[None] * pts[:, None, 2]
    curve = curve.reshape(-1, 2) * side
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    dist = np.sqrt((xx.reshape(-1, 1) - curve[:, 0]) ** 2 + (yy.reshape(-1, 1) - curve[:, 1]) ** 2).min(1).reshape(side, side)
    width = rng.uniform(0.5, 0.8) * SUPER  # a stroke of 1-1.6 px at the drawing scale
    ink = np.clip(width - dist, 0, 1)
    return ink.reshape(GLYPH, SUPER, GLYPH, SUPER).mean((1, 3))


def render(shapes: list[np.ndarray], n: int, size: int, chans: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x chans x size x size uint8 images, n x len(shapes) uint8 labels)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng([seed, 2])
    low = max(size // 2, GLYPH)
    canvases = np.zeros((n, 1, low, low))
    labels = np.zeros((n, len(shapes)), dtype=np.uint8)
    for i in range(n):
        for c in rng.choice(len(shapes), size=int(rng.integers(1, 5)), replace=False):
            y, x = rng.integers(0, low - GLYPH + 1, size=2)
            cell = canvases[i, 0, y : y + GLYPH, x : x + GLYPH]
            np.maximum(cell, _glyph(shapes[c], rng) * rng.uniform(0.7, 1.0), out=cell)
            labels[i, c] = 1
    images = np.empty((n, chans, size, size), dtype=np.uint8)
    for start in range(0, n, 4096):
        up = F.interpolate(torch.from_numpy(canvases[start : start + 4096]), size=(size, size), mode="bilinear", align_corners=False)
        images[start : start + 4096] = (up.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # grey, alike in every channel
    return images, labels
