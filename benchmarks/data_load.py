"""Loading Sewer-ML at full scale, and decoding images in one DataLoader worker.

    python benchmarks/data_load.py                  # 1.04 M rows, 300 images per format
    python benchmarks/data_load.py --rows 100000    # quicker

1. Table: a synthetic SewerML_Train.csv with 1.04 M rows (Filename, the 17 codes, VA, ND, Defect,
   WaterLevel) and one empty file per row, then, in a fresh process, the loader's own code on it:
   parse with pyarrow, validate every label, list the folder once and check every file name against
   the listing (`sewerml.read_csv` + `files.check_files`). Wall time (target <= 5 s) and the peak
   resident memory it adds to the process (target <= 300 MB; torch and timm, imported before the
   measurement, are reported apart).
2. Decoding: images/s of one process (what one DataLoader worker delivers) through the loaders'
   dataset class with the training transform (RandAugment) at 224 px, for PNG frames (640 x 480
   RGB, like CCTV frames), 4-band planar TIFFs (304 x 304, like TreeSatAI) and RGB TIFFs (256 x 256,
   like UcMerced).

Prints a table and writes benchmarks/results/data_load.json. The machine may be shared: run it
twice before trusting a single figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CODES = ["RB", "OB", "PF", "DE", "FS", "IS", "RO", "IN", "AF", "BE", "FO", "GR", "PH", "PB", "OS", "OP", "OK"]


def write_sewer_table(root: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    labels = (rng.random((rows, len(CODES))) < 0.05).astype(np.int8)
    names = pa.array([f"{i:08d}.png" for i in range(rows)])
    columns = {"Filename": names, **{c: labels[:, j] for j, c in enumerate(CODES)}}
    defect = labels.any(axis=1).astype(np.int8)
    columns.update(VA=np.zeros(rows, np.int8), ND=1 - defect, Defect=defect, WaterLevel=rng.integers(0, 100, rows))
    pacsv.write_csv(pa.table(columns), root / "SewerML_Train.csv")
    for i in range(rows):  # empty files: the check lists names, it never opens them
        os.close(os.open(root / f"{i:08d}.png", os.O_CREAT | os.O_WRONLY, 0o644))


def measure_table(root: Path) -> dict:
    """Runs in a fresh process (see main): imports first, then the measured part."""
    from mhss_ray.data import sewerml
    from mhss_ray.data.files import check_files

    def status_mb(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

    base = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: restart the peak (VmHWM) from the current resident size
    start = time.perf_counter()
    names, labels = sewerml.read_csv(root / "SewerML_Train.csv")
    parsed = time.perf_counter()
    check_files(names, root, root / "SewerML_Train.csv")
    done = time.perf_counter()
    return {
        "rows": len(names),
        "parse_and_validate_s": parsed - start,
        "file_check_s": done - parsed,
        "total_s": done - start,
        "peak_added_mb": status_mb("VmHWM") - base,
        "imports_mb": base,
        "labels_mb": labels.nbytes / 2**20,
        "names_mb": names.nbytes / 2**20,
    }


def write_images(root: Path, count: int) -> dict[str, list[str]]:
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(1)
    out: dict[str, list[str]] = {"png 640x480 rgb": [], "tiff 304x304 4-band": [], "tiff 256x256 rgb": []}
    for i in range(count):
        # smooth content plus noise: compresses like a photograph, not like white noise
        base = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None] + rng.normal(0, 12, (480, 640, 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(root / f"f{i}.png")
        out["png 640x480 rgb"].append(f"f{i}.png")
        tifffile.imwrite(
            root / f"t{i}.tif", rng.integers(0, 255, (4, 304, 304), dtype=np.uint8), photometric="minisblack", planarconfig="separate"
        )
        out["tiff 304x304 4-band"].append(f"t{i}.tif")
        tifffile.imwrite(root / f"u{i}.tif", rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), photometric="rgb")
        out["tiff 256x256 rgb"].append(f"u{i}.tif")
    return out


def measure_decoding(root: Path, files: dict[str, list[str]]) -> list[dict]:
    import pyarrow as pa
    import torch

    from mhss_ray.config import DataConfig
    from mhss_ray.data.images import ImageFiles, ImageReader
    from mhss_ray.data.transforms import build_transforms

    torch.set_num_threads(1)  # one DataLoader worker
    cfg = DataConfig(image_size=224)
    rows = []
    for kind, names in files.items():
        reader = ImageReader((3, 1, 2)) if "4-band" in kind else ImageReader()
        t = build_transforms(cfg, reader.channels, [0.5] * reader.channels, [0.25] * reader.channels)
        ds = ImageFiles(root, pa.array(names), reader, [t.train], 224)
        ds[0]  # warm the caches of the first call
        start = time.perf_counter()
        for i in range(len(ds)):
            image, index = ds[i]
            assert index == i and image.shape == (3, 224, 224)
        seconds = time.perf_counter() - start
        rows.append({"format": kind, "images": len(ds), "images_per_s": len(ds) / seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_040_000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "data_load.json"))
    parser.add_argument("--measure-table", help=argparse.SUPPRESS)  # internal: the fresh process
    args = parser.parse_args()
    if args.measure_table:
        print(json.dumps(measure_table(Path(args.measure_table))))
        return

    from benchmarks.common import write_result

    with tempfile.TemporaryDirectory(prefix="mhss-data-load-") as tmp:
        tmp = Path(tmp)
        (tmp / "sewer").mkdir()
        (tmp / "images").mkdir()
        start = time.perf_counter()
        write_sewer_table(tmp / "sewer", args.rows)
        print(f"wrote {args.rows} rows and files in {time.perf_counter() - start:.0f} s")
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            [sys.executable, __file__, "--measure-table", str(tmp / "sewer")], env=env, capture_output=True, text=True, check=True
        )
        table = json.loads(proc.stdout.strip().splitlines()[-1])
        decoding = measure_decoding(tmp / "images", write_images(tmp / "images", args.images))

    print(f"\nSewer-ML table, {table['rows']} rows (targets: <= 5 s, <= 300 MB)")
    print(f"  parse + validate labels   {table['parse_and_validate_s']:6.2f} s")
    print(f"  list folder + check files {table['file_check_s']:6.2f} s")
    print(f"  total                     {table['total_s']:6.2f} s")
    print(
        f"  peak memory added         {table['peak_added_mb']:6.0f} MB  (labels {table['labels_mb']:.0f} MB, names "
        f"{table['names_mb']:.0f} MB kept; imports {table['imports_mb']:.0f} MB before)"
    )
    print("\nDecoding + training transform at 224 px, one process (= one DataLoader worker)")
    for row in decoding:
        print(f"  {row['format']:<22} {row['images_per_s']:7.1f} images/s  ({row['images']} images)")
    write_result(args.out, {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"table_total_s": 5, "table_peak_added_mb": 300},
        "table": table,
        "decoding_one_worker": decoding,
    })  # fmt: skip


if __name__ == "__main__":
    main()
