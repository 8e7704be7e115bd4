"""Training throughput of one and two networks (images/s), measured by the real training loop.

    python benchmarks/train_speed.py                       # benchmarks/base.yaml, digits-mosaic
    python benchmarks/train_speed.py --synthetic 2048 \\
        --set model.name=tresnet_m --set data.image_size=224  # random 3-channel images

Each configuration trains one warm-up epoch and then `--epochs` timed epochs with `Trainer`
(the same code `mhss-train` runs); two networks use the FixedLabels method with num_networks=2,
the cost floor of every dual-network method. Prints a table and writes JSON. Compare ratios
measured in the same run: the machine may be shared.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import relative, synthetic_bundle, write_result  # noqa: E402
from mhss_ray.config import load_run_config  # noqa: E402
from mhss_ray.data import build_dataset  # noqa: E402
from mhss_ray.methods import AsymmetricLoss  # noqa: E402
from mhss_ray.methods.baseline import FixedLabels  # noqa: E402
from mhss_ray.train.loop import Trainer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "benchmarks" / "base.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--networks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs after one warm-up epoch")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random 3-channel images instead of the config's dataset")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    args = parser.parse_args(argv)

    cfg = load_run_config(args.config, args.overrides)
    data = synthetic_bundle(args.synthetic, cfg.data.image_size) if args.synthetic else build_dataset(cfg)
    rows = []
    for n in args.networks:
        trainer = Trainer(
            cfg,
            data=data,
            method_factory=lambda c, observed, clean, n=n: FixedLabels(observed, clean, AsymmetricLoss.from_config(c.loss), num_networks=n),
        )
        if trainer.rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.train_one_epoch(0)  # warm-up: allocator, cudnn autotuning, first-touch
        speeds = [trainer.train_one_epoch(e + 1)["images_per_s"] for e in range(args.epochs)]
        row = {
            "networks": n,
            "images_per_s": float(np.mean(speeds)),
            "network_images_per_s": float(np.mean(speeds)) * n,
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if trainer.rt.device.type == "cuda" else None,
        }
        rows.append(row)
        del trainer
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speed_vs_first"] = row["images_per_s"] / base

    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available() and cfg.runtime.device != "cpu"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    result = {
        "config": relative(args.config),
        "overrides": args.overrides,
        "dataset": data.name,
        "train_images": len(data.train),
        "model": cfg.model.name,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    print(f"{cfg.model.name} at {cfg.data.image_size} px, batch {cfg.data.batch_size}, {data.name} ({len(data.train)} images), {device}")
    print(f"{'networks':>8} | {'images/s':>9} | {'vs first':>8} | {'peak GPU GiB':>12}")
    for r in rows:
        mem = f"{r['peak_gpu_mem_gib']:.2f}" if r["peak_gpu_mem_gib"] is not None else "-"
        print(f"{r['networks']:>8} | {r['images_per_s']:>9.1f} | {r['speed_vs_first']:>8.2f} | {mem:>12}")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
