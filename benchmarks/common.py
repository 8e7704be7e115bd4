"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mhss_ray.data import DataBundle, Split
from mhss_ray.data.base import InMemoryImages

REPO = Path(__file__).resolve().parents[1]


def relative(path: str | Path) -> str:
    """Paths inside the repository are recorded relative to it, so results name no machine."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else p.name


def synthetic_bundle(n: int, size: int, classes: int = 10, seed: int = 0) -> DataBundle:
    """n random 3-channel images with random labels: throughput at any image size, no dataset needed."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = (torch.rand(n, classes, generator=g) < 0.2).numpy().astype(np.uint8)
    few = Split(InMemoryImages(images[:64], 0.5, 0.25), labels[:64])
    return DataBundle("synthetic", [str(c) for c in range(classes)], 3, Split(InMemoryImages(images, 0.5, 0.25), labels), few, few)


def write_result(path: str | Path, result: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {relative(out)}")


def load_runs(path: Path) -> dict:
    """A benchmark's run store ({"runs": {key: figures}}); empty before its first run."""
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def save_run(path: Path, key: str, value: dict) -> None:
    """Add one finished run to the store, re-read first (several seeds run as separate processes) and
    replaced whole (a reader never sees half a file)."""
    import os

    store = load_runs(path)
    store["runs"][key] = value
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(store, indent=1, default=float) + "\n")
    tmp.replace(path)
