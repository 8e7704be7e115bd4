"""Cost of each method against two plain ASL steps, and the bytes of its per-sample state.

    python benchmarks/method_overhead.py                       # benchmarks/base.yaml (resnet18, 32 px), CPU
    python benchmarks/method_overhead.py --set model.name=tresnet_m --set data.image_size=224 \\
        --set data.batch_size=64 --synthetic 512 --set runtime.device=cuda

Each method's `Trainer.train_step` (forward of every network and view, the method's selection and
correction, backward, optimiser step) runs on the same batch, past the warm-up and the tau ramp so
that selection and correction are active. Steps of all methods are interleaved round-robin and the
median is taken, so the ratios (method step / two plain ASL steps, i.e. FixedLabels with two
networks) come from the same stretch of machine time. State bytes are those of the method's
checkpointed state divided by samples x classes x networks. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import relative, synthetic_bundle, write_result  # noqa: E402
from mhss_ray.config import load_run_config  # noqa: E402
from mhss_ray.data import build_dataset  # noqa: E402
from mhss_ray.methods import AsymmetricLoss  # noqa: E402
from mhss_ray.methods.baseline import FixedLabels  # noqa: E402
from mhss_ray.train.loop import Trainer  # noqa: E402

METHODS = {
    "two ASL steps": None,
    "asl (one network)": {"name": "asl"},
    "coteaching": {"name": "coteaching", "granularity": "per_class"},
    "coselfie": {"name": "coselfie", "granularity": "per_class"},
    "mhss": {"name": "mhss", "granularity": "per_class"},
    "mhss (polarity)": {"name": "mhss", "granularity": "per_class_polarity"},  # the shipped default
    "disc": {"name": "disc", "mixup_alpha": 5.0},
}
ACTIVE_EPOCH = 50  # past warm-up (q = 5, DISC 10) and the tau ramp (T_k = 10)


def state_bytes(method, only: str | None = None) -> int:
    """Bytes of the method's checkpointed state (or of one top-level part of it, e.g. histories)."""

    def walk(x):
        if isinstance(x, torch.Tensor):
            return x.numel() * x.element_size()
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(walk(v) for v in x)
        return 0

    state = method.state_dict()
    return walk(state if only is None else state.get(only, {}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "benchmarks" / "base.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method (after 3 warm-up steps)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random 3-channel images instead of the config's dataset")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "method_overhead.json"))
    args = parser.parse_args(argv)

    cfg = load_run_config(args.config, ["data.n_train=1024", "noise.mode=complex", *args.overrides])
    data = synthetic_bundle(args.synthetic, cfg.data.image_size) if args.synthetic else build_dataset(cfg)
    trainers, batches = {}, {}
    for label, method in METHODS.items():
        if method is None:
            factory = lambda c, observed, clean: FixedLabels(observed, clean, AsymmetricLoss.from_config(c.loss), num_networks=2)  # noqa: E731
            t = Trainer(cfg, data=data, method_factory=factory)
        else:
            c = load_run_config(
                args.config, ["data.n_train=1024", "noise.mode=complex", *args.overrides, *[f"method.{k}={v}" for k, v in method.items()]]
            )
            t = Trainer(c, data=data)
        for net in t.networks.nets:
            net.train()
        t.method.begin_epoch(ACTIVE_EPOCH)
        images, indices = next(iter(t.train_loader))  # the loader's first batch: the same samples for every method
        views = [t.rt.to_device(v) for v in (images if isinstance(images, (list, tuple)) else [images])]
        trainers[label], batches[label] = t, (views, indices.to(t.rt.device))

    sync = torch.cuda.synchronize if torch.cuda.is_available() and cfg.runtime.device != "cpu" else (lambda: None)
    times = {label: [] for label in METHODS}
    for step in range(args.steps + 3):
        for label, t in trainers.items():
            sync()
            start = time.perf_counter()
            t.train_step(*batches[label])
            sync()
            if step >= 3:
                times[label].append(time.perf_counter() - start)

    base = statistics.median(times["two ASL steps"])
    rows = []
    for label, t in trainers.items():
        n, c = t.observed.shape
        median = statistics.median(times[label])
        rows.append(
            {
                "method": label,
                "networks": len(t.networks),
                "views": t.method.num_views,
                "step_ms": median * 1000,
                "vs_two_asl_steps": median / base,
                "state_bytes": state_bytes(t.method),
                "bytes_per_sample_class_network": state_bytes(t.method) / (n * c * len(t.networks)),
                "history_bytes_per_sample_class_network": state_bytes(t.method, "histories") / (n * c * len(t.networks)),
            }
        )
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available() and cfg.runtime.device != "cpu"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    result = {
        "config": relative(args.config),
        "overrides": args.overrides,
        "model": cfg.model.name,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "train_images": len(data.train),
        "device": device,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    print(f"{cfg.model.name} at {cfg.data.image_size} px, batch {cfg.data.batch_size}, {device}; median of {args.steps} steps")
    print(
        f"{'method':>18} | {'nets':>4} | {'views':>5} | {'step ms':>8} | {'vs 2 ASL':>8} | {'state B/(sample*class*net)':>26} "
        f"| {'of which history':>16}"
    )
    for r in rows:
        print(
            f"{r['method']:>18} | {r['networks']:>4} | {r['views']:>5} | {r['step_ms']:>8.1f} | {r['vs_two_asl_steps']:>8.2f} | "
            f"{r['bytes_per_sample_class_network']:>26.3f} | {r['history_bytes_per_sample_class_network']:>16.3f}"
        )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
