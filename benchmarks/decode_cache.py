"""Decoding each image once per study (data.cache_dir) against decoding it every epoch.

    python benchmarks/decode_cache.py                 # 1,000 images per format, the study too
    python benchmarks/decode_cache.py --images 200 --no-study   # quicker

1. Per format (PNG frames 640 x 480 RGB like CCTV frames, 4-band planar TIFFs 304 x 304 like TreeSatAI,
   RGB TIFFs 256 x 256 like UcMerced; the images of benchmarks/data_load.py): images/s of one process
   (= one DataLoader worker) through the loaders' dataset class with the training transform
   (RandAugment) at 224 px, from the files and from the cache, in the same run (target >= 5x for the
   PNG frames); the cache's build time (with every CPU) and size.
2. The store, chosen by this measurement: random-access reads/s of the PNG frames' shrunk pixels from
   numpy memory-mapped shards (what data/decode_cache.py writes), from an Arrow IPC file mapped into
   memory (one binary cell per image), and from PNG files re-encoded at the cached size.
3. A study: mhss-tune, 4 trials x 3 epochs (2 at a time, one DataLoader worker each) on a Sewer-ML-format
   fixture of 500 real 640 x 480 PNG frames, a light network (mobilenetv3_small_050 at 64 px: beside a GPU
   the network is fast and decoding is what waits), wall time with the cache (its build included) and without.

Prints a table and writes benchmarks/results/decode_cache.{json,md}. The machine may be shared: the
ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 224


def per_worker(ds, count: int) -> float:
    ds[0]  # warm the first call's caches
    start = time.perf_counter()
    for i in range(count):
        image, index = ds[i]
        assert index == i and image.shape[1:] == (SIZE, SIZE)
    return count / (time.perf_counter() - start)


def measure_formats(root: Path, files: dict[str, list[str]], measured: int) -> tuple[list[dict], dict]:
    import pyarrow as pa
    import torch

    from mhss_ray.config import DataConfig
    from mhss_ray.data.decode_cache import open_cache
    from mhss_ray.data.images import ImageFiles, ImageReader
    from mhss_ray.data.transforms import build_transforms

    torch.set_num_threads(1)  # one DataLoader worker
    rows, caches = [], {}
    for kind, names in files.items():
        reader = ImageReader((3, 1, 2)) if "4-band" in kind else ImageReader()
        t = build_transforms(DataConfig(image_size=SIZE), reader.channels, [0.5] * reader.channels, [0.25] * reader.channels)
        arrow = pa.array(names)
        start = time.perf_counter()
        cache = open_cache(
            root / "cache",
            kind.split()[0] + kind.split()[1],
            str(root),
            arrow,
            reader,
            SIZE,
            workers=os.cpu_count() or 1,
            say=lambda _: None,
        )
        build_s = time.perf_counter() - start
        caches[kind] = cache
        files_ds = ImageFiles(root, arrow, reader, [t.train], SIZE)
        cached_ds = ImageFiles(root, arrow, reader, [t.train], SIZE, cache=cache)
        n = min(measured, len(names))
        from_files, from_cache = per_worker(files_ds, n), per_worker(cached_ds, n)
        meta = json.loads((cache.folder / "meta.json").read_text())
        rows.append({
            "format": kind, "images": len(names), "measured": n,
            "files_images_per_s": from_files, "cache_images_per_s": from_cache, "speedup": from_cache / from_files,
            "build_s": build_s, "build_workers": os.cpu_count() or 1, "cache_mb": meta["bytes"] / 1e6,
            "files_mb": sum((root / f).stat().st_size for f in names) / 1e6, "stored_shape": list(cache(0).shape),
        })  # fmt: skip
    return rows, caches


def measure_stores(cache, tmp: Path, reads: int) -> list[dict]:
    """Random-access reads of the same shrunk pixels from three stores."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    from PIL import Image

    n = len(cache)
    arrays = [np.array(cache(i)) for i in range(n)]
    order = [random.Random(0).randrange(n) for _ in range(reads)]

    # Arrow IPC: one binary cell per image, its shape beside it
    table = pa.table(
        {
            "pixels": pa.array([a.tobytes() for a in arrays], pa.large_binary()),
            "h": [a.shape[0] for a in arrays],
            "w": [a.shape[1] for a in arrays],
        }
    )
    with ipc.new_file(str(tmp / "pixels.arrow"), table.schema) as writer:
        writer.write_table(table)
    # PNG re-encoded at the cached size
    (tmp / "png").mkdir(exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a, "RGB").save(tmp / "png" / f"{i}.png")

    def memmap_read(i):
        return np.asarray(cache(i)).sum(dtype=np.int64)  # touch every byte, as a transform would

    shards = {}

    def unchecked_read(i):  # the same slice without the per-image checksum: what verifying costs
        shard, offset, h, w, c, _ = (int(v) for v in cache.index[i])
        if shard not in shards:
            shards[shard] = np.memmap(cache.folder / f"shard-{shard:05d}.u8", dtype=np.uint8, mode="r")
        return shards[shard][offset : offset + h * w * c].reshape(h, w, c).sum(dtype=np.int64)

    mapped = ipc.open_file(pa.memory_map(str(tmp / "pixels.arrow"))).read_all()
    pixels, hs, ws = mapped.column("pixels"), mapped.column("h").to_numpy(), mapped.column("w").to_numpy()

    def arrow_read(i):
        buf = pixels[i].as_buffer()  # zero-copy view of the cell
        return np.frombuffer(buf, np.uint8).reshape(hs[i], ws[i], 3).sum(dtype=np.int64)

    def png_read(i):
        with Image.open(tmp / "png" / f"{i}.png") as img:
            return np.asarray(img.convert("RGB")).sum(dtype=np.int64)

    rows = []
    for name, read in (
        ("numpy memmap shards", memmap_read),
        ("numpy memmap shards, checksums not checked", unchecked_read),
        ("Arrow IPC, memory-mapped", arrow_read),
        ("PNG at the cached size", png_read),
    ):
        for i in order:  # one untimed pass: every store read from warm pages
            read(i)
        start = time.perf_counter()
        for i in order:
            read(i)
        pixel_bytes = sum(a.nbytes for a in arrays)
        size = {
            "numpy memmap shards": pixel_bytes,
            "numpy memmap shards, checksums not checked": pixel_bytes,
            "Arrow IPC, memory-mapped": (tmp / "pixels.arrow").stat().st_size,
            "PNG at the cached size": sum(f.stat().st_size for f in (tmp / "png").iterdir()),
        }[name]
        rows.append({"store": name, "reads_per_s": reads / (time.perf_counter() - start), "mb": size / 1e6})
    return rows


def write_frames(folder: Path, names: list[str]) -> None:
    """Overwrite a fixture's images with 640 x 480 photo-like frames (the fixture's own are 32 px)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for name in names:
        base = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None] + rng.normal(0, 12, (480, 640, 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(folder / name)


def measure_study(tmp: Path) -> list[dict]:
    import yaml

    from mhss_ray.data import fixtures

    root = tmp / "sewer"
    written = fixtures.write_sewerml(root, n_train=400, n_val=100, size=32)
    write_frames(root, [p.relative_to(root) for p in root.rglob("*.png")])
    space = {
        "seed": 1,
        "data": {"name": "sewerml", "root": str(root), "image_size": 64, "batch_size": 32, "num_workers": 1},
        "noise": {"mode": "naive", "rate": 0.2},
        "model": {"name": "mobilenetv3_small_050"},  # light, so that decoding weighs as it does beside a GPU
        "method": {"name": "coteaching"},
        "schedule": {"epochs": 3},
        "runtime": {"device": "cpu", "threads": 1},
        "search": {"method.alpha": {"dist": "uniform", "low": 0.25, "high": 2.0}},
        "tune": {"num_samples": 4, "max_concurrent_trials": 2, "scheduler": {"name": "fifo"}, "search_alg": {"name": "random", "seed": 3},
                 "resources": {"workers": 0, "cpus_per_worker": 1}},
    }  # fmt: skip
    (tmp / "space.yaml").write_text(yaml.safe_dump(space))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    rows = []
    for label, sets in (("without the cache", ["data.cache_dir=off"]), ("with the cache (its build included)", [])):
        storage = tmp / label.split()[0] / "studies"
        cmd = [
            sys.executable,
            "-c",
            "from mhss_ray.cli import tune_main; tune_main()",
            "--space",
            str(tmp / "space.yaml"),
            "--storage",
            str(storage),
        ]
        for s in sets:
            cmd += ["--set", s]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"study {label} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        epochs = sum(len(f.read_text().splitlines()) for f in storage.rglob("result.json"))
        rows.append({"study": label, "wall_s": seconds, "trial_epochs": epochs, "images": sum(len(names) for names, _ in written.values())})
    return rows


def markdown(result: dict) -> str:
    lines = ["# Decode cache (`benchmarks/decode_cache.py`)", "",
             f"One process (= one DataLoader worker), training transform with RandAugment at {SIZE} px; "
             f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}.", "",
             "| format | from files (images/s) | from the cache (images/s) | speed-up | build (s, all CPUs) | cache (MB) | files (MB) "
             "| stored shape |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for r in result["formats"]:
        lines.append(f"| {r['format']} ({r['images']} images) | {r['files_images_per_s']:.0f} | {r['cache_images_per_s']:.0f} | "
                     f"{r['speedup']:.1f}x | {r['build_s']:.1f} | {r['cache_mb']:.0f} | {r['files_mb']:.0f} | "
                     f"{'x'.join(map(str, r['stored_shape']))} |")  # fmt: skip
    lines += ["", "Store (random-access reads of the PNG frames' cached pixels, every byte touched):", "",
              "| store | reads/s | MB |", "| --- | ---: | ---: |"]  # fmt: skip
    for r in result["stores"]:
        lines.append(f"| {r['store']} | {r['reads_per_s']:.0f} | {r['mb']:.0f} |")
    if result.get("study"):
        lines += ["", "Study: 4 trials x 3 epochs, 2 at a time, one DataLoader worker each, Sewer-ML format, 500 PNG frames "
                  "640 x 480, mobilenetv3_small_050 at 64 px:", "",
                  "| study | wall time (s) | trial-epochs |", "| --- | ---: | ---: |"]  # fmt: skip
        for r in result["study"]:
            lines.append(f"| {r['study']} | {r['wall_s']:.0f} | {r['trial_epochs']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images per format")
    parser.add_argument("--measured", type=int, default=300, help="images read per measurement")
    parser.add_argument("--no-study", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode_cache.json"))
    args = parser.parse_args()

    from benchmarks.common import write_result
    from benchmarks.data_load import write_images

    with tempfile.TemporaryDirectory(prefix="mhss-decode-cache-") as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        start = time.perf_counter()
        files = write_images(tmp / "images", args.images)
        print(f"wrote {args.images} images per format in {time.perf_counter() - start:.0f} s", flush=True)
        formats, caches = measure_formats(tmp / "images", files, args.measured)
        (tmp / "stores").mkdir()
        stores = measure_stores(caches["png 640x480 rgb"], tmp / "stores", reads=2000)
        study = None if args.no_study else measure_study(tmp)

    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "targets": {"png_speedup": 5},
              "formats": formats, "stores": stores, "study": study}  # fmt: skip
    table = markdown(result)
    print("\n" + table)
    write_result(args.out, result)
    Path(args.out).with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
