"""What running through Ray costs, and what ASHA + HyperOpt saves.

    python benchmarks/tune_overhead.py                 # both parts, demo space, CPU
    python benchmarks/tune_overhead.py --part overhead # only part 1 (about 5 min on 2 cores)
    python benchmarks/tune_overhead.py --part asha     # only part 2 (about 30 min on 2 cores)

1. Overhead: the demo's base config (no search) trained three ways, one after the other, with the
   whole machine: `mhss-train`, a one-trial `mhss-tune` with the loop in-process (workers: 0) and
   a one-trial `mhss-tune` through Ray Train (workers: 1). Per-epoch time (the loop's own
   `epoch_seconds`, epochs 2+) as a ratio to `mhss-train` (target <= 1.05), and fixed start-up:
   for `mhss-train` the process's wall time minus its epochs; for a trial, Tune's `time_total_s`
   (trial start to last report) minus its epochs (target <= 15 s on CPU); for the study, the wall
   time minus the trial's (starting Ray, once per study). The three run in turn, twice by default,
   and each keeps its fastest run: on a shared machine the same command varied by 30%.
2. Early stopping: the demo space run twice with the same trial count, FIFO with random search
   (every trial to max_t) and ASHA + HyperOpt (the demo's own settings). Epochs ASHA + HyperOpt
   spent, in the order they were reported, until a trial completed max_t epochs with a final
   val_mAP within 1 point of FIFO's best final val_mAP, as a share of FIFO's total epochs (target
   <= 40%). Final values, not the best epoch of any trial: on the demo every trial is identical
   during warm-up, so a best-epoch criterion would be met by the warm-up alone.

Everything runs the real commands in subprocesses on a local Ray cluster; prints a table and writes
JSON. The machine may be shared: compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import relative, write_result  # noqa: E402


def cli(command: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("RAY_AUTH_MODE", "disabled")
    main = {"train": "train_main", "tune": "tune_main"}[command]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", f"from mhss_ray.cli import {main}; {main}()", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"mhss-{command} {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, proc


def trial_rows(study: Path) -> dict[str, list[dict]]:
    trials = {}
    for f in study.rglob("result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            trials[rows[0]["trial_id"]] = rows
    return trials


def steady(seconds: list[float]) -> float:
    """Mean epoch time without the first epoch (allocator and thread-pool warm-up)."""
    rest = seconds[1:] or seconds
    return sum(rest) / len(rest)


# ----------------------------------------------------------------------------- part 1


def overhead(space: Path, work: Path, epochs: int, cpus: int, repeats: int) -> dict:
    data = read_base(space)
    data["schedule"]["epochs"] = epochs
    data["runtime"] = {**data.get("runtime", {}), "threads": cpus}
    config = work / "single.yaml"
    config.write_text(yaml.safe_dump(data))

    def plain(run: int) -> dict:
        wall, _ = cli("train", "--config", str(config), "--out", str(work / "train"), "--overwrite")
        rows = [json.loads(line) for line in (work / "train" / "metrics.jsonl").read_text().splitlines()]
        epoch_s = [r["epoch_seconds"] for r in rows]
        return {"how": "mhss-train", "epoch_s": steady(epoch_s), "startup_s": wall - sum(epoch_s), "study_startup_s": None, "wall_s": wall}

    def study(run: int, workers: int) -> dict:
        name = f"single_w{workers}_{run}"
        tune_block = {
            "num_samples": 1,
            "max_concurrent_trials": 1,
            "scheduler": {"name": "fifo"},
            "search_alg": {"name": "random", "seed": 0},
            "resources": {"workers": workers, "cpus_per_worker": cpus},
            "storage_path": str(work / "studies"),
            "name": name,
        }
        space_file = work / f"{name}.yaml"
        space_file.write_text(yaml.safe_dump({**data, "tune": tune_block}))
        wall, _ = cli("tune", "--space", str(space_file))
        (rows,) = trial_rows(work / "studies" / name).values()
        epoch_s = [r["epoch_seconds"] for r in rows]
        trial_s = rows[-1]["time_total_s"]
        how = "mhss-tune, in-process (workers: 0)" if workers == 0 else "mhss-tune, Ray Train (workers: 1)"
        return {
            "how": how,
            "epoch_s": steady(epoch_s),
            "startup_s": trial_s - sum(epoch_s),
            "study_startup_s": wall - trial_s,
            "wall_s": wall,
        }

    # the three ways run in turn, `repeats` times; each keeps its fastest run (a shared machine only
    # ever adds time), and every run is recorded
    runs = []
    for run in range(repeats):
        runs += [plain(run), study(run, 0), study(run, 1)]
    results = []
    for how in dict.fromkeys(r["how"] for r in runs):
        mine = [r for r in runs if r["how"] == how]
        best = min(mine, key=lambda r: r["epoch_s"])
        results.append(
            {
                **best,
                "startup_s": min(r["startup_s"] for r in mine),
                "epoch_s_all": [r["epoch_s"] for r in mine],
                "startup_s_all": [r["startup_s"] for r in mine],
            }
        )
    base = results[0]["epoch_s"]
    for r in results:
        r["epoch_ratio"] = r["epoch_s"] / base
    return {"epochs": epochs, "cpus": cpus, "repeats": repeats, "rows": results}


# ----------------------------------------------------------------------------- part 2


def asha_vs_fifo(space: Path, work: Path, samples: int) -> dict:
    data = yaml.safe_load(space.read_text())
    max_t = data["schedule"]["epochs"]
    studies = {}
    for label, scheduler, search_alg in (
        ("fifo", {"name": "fifo"}, {"name": "random", "seed": 0}),
        ("asha_hyperopt", data["tune"]["scheduler"], data["tune"]["search_alg"]),
    ):
        tune_block = {
            **data["tune"],
            "num_samples": samples,
            "scheduler": scheduler,
            "search_alg": search_alg,
            "storage_path": str(work / "studies"),
            "name": label,
        }
        space_file = work / f"{label}.yaml"
        space_file.write_text(yaml.safe_dump({**data, "tune": tune_block}))
        wall, _ = cli("tune", "--space", str(space_file))
        studies[label] = (wall, trial_rows(work / "studies" / label))

    fifo_wall, fifo = studies["fifo"]
    fifo_final = max(rows[-1]["val_mAP"] for rows in fifo.values())
    fifo_epochs = sum(len(rows) for rows in fifo.values())
    asha_wall, asha = studies["asha_hyperopt"]
    # every epoch ASHA + HyperOpt ran, in the order the reports arrived; a configuration counts as
    # found when a trial completes max_t epochs within 1 point of FIFO's best final val_mAP
    timeline = sorted((r["timestamp"], r["time_total_s"], r["epoch"], r["val_mAP"]) for rows in asha.values() for r in rows)
    spent, found_at = 0, None
    for _, _, epoch, val in timeline:
        spent += 1
        if found_at is None and epoch == max_t and val >= fifo_final - 1.0:
            found_at = spent
    finals = [rows[-1]["val_mAP"] for rows in asha.values() if rows[-1]["epoch"] == max_t]
    return {
        "trials": samples,
        "max_t": max_t,
        "fifo": {"epochs": fifo_epochs, "best_final_val_mAP": fifo_final, "wall_s": fifo_wall},
        "asha_hyperopt": {
            "epochs": spent,
            "best_final_val_mAP": max(finals) if finals else None,
            "epochs_to_within_1_point": found_at,
            "share_of_fifo_epochs": None if found_at is None else found_at / fifo_epochs,
            "stopped_early": sum(1 for rows in asha.values() if rows[-1]["epoch"] < max_t),
            "wall_s": asha_wall,
        },
    }


def read_base(space: Path) -> dict:
    data = yaml.safe_load(space.read_text())
    return {k: v for k, v in data.items() if k not in ("search", "tune")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(REPO / "search_spaces" / "demo.yaml"))
    parser.add_argument("--part", choices=["overhead", "asha", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the single config (part 1)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, in turn; the fastest counts (part 1)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPU threads the single config may use (part 1)")
    parser.add_argument("--samples", type=int, default=None, help="trials of each study (part 2; default: the space's num_samples)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tune_overhead.json"))
    args = parser.parse_args(argv)

    space = Path(args.space)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({"space": relative(space), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"})
    work = Path(tempfile.mkdtemp(prefix="mhss-tune-overhead-"))
    try:
        if args.part in ("overhead", "both"):
            result["overhead"] = overhead(space, work, args.epochs, args.cpus, args.repeats)
            print(f"\n1. one config, {args.epochs} epochs, {args.cpus} CPU threads, fastest of {args.repeats} runs each")
            print(f"{'how':<36} {'s/epoch':>8} {'ratio':>6} {'start-up s':>10} {'study start s':>13}")
            for r in result["overhead"]["rows"]:
                study = "" if r["study_startup_s"] is None else f"{r['study_startup_s']:.1f}"
                print(f"{r['how']:<36} {r['epoch_s']:>8.2f} {r['epoch_ratio']:>6.3f} {r['startup_s']:>10.1f} {study:>13}")
        if args.part in ("asha", "both"):
            samples = args.samples or yaml.safe_load(space.read_text())["tune"]["num_samples"]
            result["asha"] = a = asha_vs_fifo(space, work, samples)
            f, h = a["fifo"], a["asha_hyperopt"]
            print(f"\n2. {samples} trials, max_t {a['max_t']} epochs")
            print(f"FIFO:           {f['epochs']} epochs, best final val_mAP {f['best_final_val_mAP']:.2f}, {f['wall_s']:.0f} s")
            share = (
                "never"
                if h["share_of_fifo_epochs"] is None
                else f"{h['epochs_to_within_1_point']} epochs = {100 * h['share_of_fifo_epochs']:.0f}% of FIFO's"
            )
            best = "none completed" if h["best_final_val_mAP"] is None else f"{h['best_final_val_mAP']:.2f}"
            print(
                f"ASHA+HyperOpt:  {h['epochs']} epochs, best final val_mAP {best}, {h['stopped_early']} trials stopped early, "
                f"{h['wall_s']:.0f} s"
            )
            print(f"a trial completed within 1 point of FIFO's best after {share}")
        write_result(out, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
