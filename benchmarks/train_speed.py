"""Training throughput of one and two networks (images/s), measured by the real training loop.

    python benchmarks/train_speed.py                       # benchmarks/base.yaml, digits-mosaic
    python benchmarks/train_speed.py --synthetic 2048 \\
        --set model.name=tresnet_m --set data.image_size=224  # random 3-channel images

    python benchmarks/train_speed.py --levers --synthetic 4096 --set model.name=tresnet_m \
        --set data.image_size=224 --set data.batch_size=128      # each lever of the dual step alone

Each configuration trains one warm-up epoch and then `--epochs` timed epochs with `Trainer`
(the same code `mhss-train` runs); two networks use the FixedLabels method with num_networks=2,
the cost floor of every dual-network method. `--levers`: the dual step with the run config's
settings, then with one lever changed at a time (channels_last, bf16 autocast, torch.compile, the
fused optimizer, a doubled batch), each against the same run's reference. Prints a table and writes
JSON. Compare ratios measured in the same run: the machine may be shared.
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
    parser.add_argument("--levers", action="store_true", help="the dual step with each lever changed alone")
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="N processes training the dual step at once (N trials sharing one GPU) vs one alone",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    args = parser.parse_args(argv)
    if args.levers:
        return levers(args)
    if args.concurrent:
        return concurrent(args)

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


LEVERS = [  # (lever, the overrides that change it alone, given the reference config)
    ("channels_last off", lambda base: ["runtime.channels_last=off"]),
    ("bf16 autocast on", lambda base: ["runtime.amp=on"]),
    ("bf16 autocast off", lambda base: ["runtime.amp=off"]),
    ("torch.compile on", lambda base: ["runtime.compile=on"]),
    ("fused optimizer on", lambda base: ["runtime.fused_optimizer=on"]),
    ("fused optimizer off", lambda base: ["runtime.fused_optimizer=off"]),
    ("batch x2", lambda base: [f"data.batch_size={2 * base.data.batch_size}"]),
]


def dual_speed(cfg, data, epochs: int) -> float:
    trainer = Trainer(
        cfg,
        data=data,
        method_factory=lambda c, observed, clean: FixedLabels(observed, clean, AsymmetricLoss.from_config(c.loss), num_networks=2),
    )
    trainer.train_one_epoch(0)  # warm-up (and compilation)
    speed = float(np.mean([trainer.train_one_epoch(e + 1)["images_per_s"] for e in range(epochs)]))
    del trainer
    return speed


def levers(args) -> int:
    from mhss_ray.errors import UserError

    base = load_run_config(args.config, args.overrides)
    data = synthetic_bundle(args.synthetic, base.data.image_size) if args.synthetic else build_dataset(base)
    reference = dual_speed(base, data, args.epochs)
    rows = [{"lever": "reference (the run config)", "images_per_s": reference, "vs_reference": 1.0}]
    print(f"{'reference':<22} {reference:9.1f} images/s", flush=True)
    for lever, changes in LEVERS:
        try:
            speed = dual_speed(load_run_config(args.config, args.overrides + changes(base)), data, args.epochs)
        except (UserError, RuntimeError) as exc:  # e.g. bf16 on a GPU without it, no compiler for torch.compile
            rows.append({"lever": lever, "images_per_s": None, "vs_reference": None, "error": str(exc).splitlines()[0][:200]})
            print(f"{lever:<22} not measured: {rows[-1]['error']}", flush=True)
            continue
        rows.append({"lever": lever, "images_per_s": speed, "vs_reference": speed / reference})
        print(f"{lever:<22} {speed:9.1f} images/s  {speed / reference:5.2f}x", flush=True)
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available() and base.runtime.device != "cpu"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    write_result(args.out, {
        "config": relative(args.config), "overrides": args.overrides, "dataset": data.name, "train_images": len(data.train),
        "model": base.model.name, "image_size": base.data.image_size, "batch_size": base.data.batch_size, "device": device,
        "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"), "networks": 2, "levers": rows,
    })  # fmt: skip
    return 0


def concurrent(args) -> int:
    """One process alone, then N at once (as N fractional-GPU trials), each training the dual step."""
    import json
    import subprocess
    import tempfile

    child = ["--config", args.config, "--epochs", str(args.epochs), "--synthetic", str(args.synthetic)]
    child += [a for s in args.overrides for a in ("--set", s)]
    with tempfile.TemporaryDirectory() as tmp:

        def run(n: int) -> list[float]:
            outs = [f"{tmp}/{n}_{i}.json" for i in range(n)]
            procs = [subprocess.Popen([sys.executable, __file__, *child, "--networks", "2", "--out", o]) for o in outs]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("a training process failed")
            return [json.loads(Path(o).read_text())["rows"][0]["images_per_s"] for o in outs]

        alone = run(1)[0]
        together = run(args.concurrent)
    total = sum(together)
    print(f"one process alone: {alone:.1f} images/s; {args.concurrent} at once: {total:.1f} images/s in all ({total / alone:.2f}x)")
    write_result(args.out, {
        "overrides": args.overrides, "networks": 2, "alone_images_per_s": alone, "concurrent": args.concurrent,
        "each_images_per_s": together, "aggregate_images_per_s": total, "aggregate_vs_alone": total / alone,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
