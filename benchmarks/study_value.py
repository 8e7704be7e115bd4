"""What a study buys, and what it costs: an MHSS study on digits-mosaic, three ways, over seeds.

    python benchmarks/study_value.py                  # 3 seeds x 3 studies (about 25 min a seed on 2 cores)
    python benchmarks/study_value.py --seeds 0 --trials 8
    python benchmarks/study_value.py --table-only      # the tables from the studies stored so far

The base is the demo space (`search_spaces/demo.yaml`: complex noise 0.2, 1,000 training mosaics, 9 epochs)
trained as users train: RandAugment views and noise rates estimated by the method (no oracle), so the space
searches alpha, theta and the warm-up's length. Each seed (the run's seed and the search's) runs:

- `today`: the study as it ran before the shared warm-up: warm-ups of 3-8 epochs, ASHA's first rung at
  epoch 5 (inside most warm-ups, which the rung check now refuses; the benchmark lifts the check for this
  one study), every trial training its own warm-up;
- `asha`: the demo's settings now: warm-ups of 3-5, ASHA's rung at epoch 6, the shared warm-up;
- `fifo`: the same space, every trial to the end (the shared warm-up on).

Every study runs 16 HyperOpt trials and the two baseline arms (ASL and Co-teaching on the base config).
Trial-epochs *computed* count what was trained: a forked trial's warm-up rows come from the prefix run
and count once, in the prefix. Trial-epochs *without the shared warm-up* are the rows the trials reported:
a forked trial's rows equal those of the same trial run alone, bit for bit
(tests/tune/test_warmup_share.py), so a study without the sharing would have trained exactly those.

Reported per study and seed: the best trial's test mAP, picked on validation (the best epoch's val mAP of
any searched trial, and the test mAP at that epoch), each arm's, the lead over the better arm, the
trial-epochs, the wall time; and when ASHA + HyperOpt first completed a trial within 1 point of FIFO's
best final val mAP, in computed trial-epochs, as a share of FIFO's. Writes
results/study_value_runs.json (one entry per study, so an interrupted run continues) and
results/study_value.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import load_runs, relative, save_run, write_result  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STUDIES = ("today", "asha", "fifo")
ARMS = ("asl", "coteaching")

# `today` reproduces the study before rungs were checked; everything else goes through the real CLI
LIFT_RUNG_CHECK = "import mhss_ray.tune.space as s; s.check_rungs = lambda *a, **k: None; "


def space(study: str, seed: int, trials: int, storage: Path) -> dict:
    data = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    data["seed"] = seed
    data["method"]["noise_rate_source"] = "estimated"
    data["method"].pop("noise_rate", None)
    data["search"].pop("method.noise_rates")
    tune = data["tune"]
    tune.update(num_samples=trials, storage_path=str(storage), name=f"{study}_s{seed}")
    tune["search_alg"]["seed"] = seed
    tune["search_alg"]["points_to_evaluate"] = [{"method.alpha": 1.0, "method.theta": 0.2, "method.warmup": 4}]
    if study == "today":
        data["search"]["method.warmup"] = {"dist": "randint", "low": 3, "high": 9}
        tune["scheduler"] = {"name": "asha", "grace_period": 5, "reduction_factor": 2}
        tune["share_warmup"] = "off"
    elif study == "fifo":
        tune["scheduler"] = {"name": "fifo"}
    return data


def run_study(data: dict, work: Path, lift_check: bool) -> float:
    path = work / f"{data['tune']['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("RAY_AUTH_MODE", "disabled")
    code = (LIFT_RUNG_CHECK if lift_check else "") + "from mhss_ray.cli import tune_main; tune_main()"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "--space", str(path)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"study {data['tune']['name']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def rows_of(folder: Path) -> list[dict]:
    rows = []
    for f in folder.glob("*/result.json"):
        rows.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return rows


def measure(study_dir: Path, max_t: int, wall: float) -> dict:
    """The study's figures from its trials' result rows and configs."""
    trials = {}
    for f in study_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        config = json.loads((f.parent / "params.json").read_text())
        trials[rows[0]["trial_id"]] = (config, rows)
    prefix_rows = rows_of(study_dir / "warmup_prefix")
    prefix_epochs = len({r["epoch"] for r in prefix_rows})
    searched = {t: v for t, v in trials.items() if not v[0].get("baseline")}
    arms = {v[0]["baseline"]: v[1] for v in trials.values() if v[0].get("baseline")}

    def best(rows: list[dict]) -> tuple[float, float]:
        top = max(rows, key=lambda r: r["val_mAP"])
        return top["val_mAP"], top["test_mAP"]

    def copied(config: dict, rows: list[dict]) -> int:
        return int(config["method.warmup"]) if prefix_epochs else 0

    reported = sum(len(rows) for _, rows in searched.values())
    computed = reported - sum(copied(c, rows) for c, rows in searched.values()) + prefix_epochs
    # the order epochs were trained: the prefix first (the forked trials wait for it), then each row a
    # trial trained itself; a trial counts as found when it completes max_t within reach of a target
    timeline = sorted(
        (r["timestamp"], r["epoch"], r["val_mAP"], r["epoch"] <= copied(c, rows)) for c, rows in searched.values() for r in rows
    )
    top_val, top_test = max(best(rows) for _, rows in searched.values())
    arm_tests = {name: best(rows)[1] for name, rows in arms.items()}
    finals = [rows[-1]["val_mAP"] for _, rows in searched.values() if rows[-1]["epoch"] == max_t]
    return {
        "trials": len(searched),
        "stopped_early": sum(1 for _, rows in searched.values() if rows[-1]["epoch"] < max_t),
        "best_val_mAP": top_val,
        "best_test_mAP": top_test,
        "best_final_val_mAP": max(finals) if finals else None,
        "arms_test_mAP": arm_tests,
        "lead_over_best_arm": top_test - max(arm_tests.values()),
        "trial_epochs_reported": reported,
        "trial_epochs_computed": computed,
        "prefix_epochs": prefix_epochs,
        "arm_epochs": sum(len(rows) for rows in arms.values()),
        "timeline": [[e, v, int(c)] for _, e, v, c in timeline],
        "wall_s": wall,
    }


def epochs_to_reach(timeline: list, prefix_epochs: int, target: float, max_t: int) -> int | None:
    """Computed trial-epochs spent until a searched trial completed max_t with val mAP >= target."""
    spent = prefix_epochs
    for epoch, val, copied in timeline:
        spent += 0 if copied else 1
        if epoch == max_t and val >= target:
            return spent
    return None


def summarise(runs: dict, seeds: list[int], max_t: int) -> dict:
    per_seed = {}
    for seed in seeds:
        s = {name: runs.get(f"{name}_s{seed}") for name in STUDIES}
        if not all(s.values()):
            continue
        fifo_best = s["fifo"]["best_final_val_mAP"]
        fifo_epochs = s["fifo"]["trial_epochs_reported"]  # FIFO as it would run without the sharing
        reach = epochs_to_reach(s["asha"]["timeline"], s["asha"]["prefix_epochs"], fifo_best - 1.0, max_t)
        per_seed[seed] = {
            "asha_vs_today_computed": s["asha"]["trial_epochs_computed"] / s["today"]["trial_epochs_computed"],
            "asha_minus_today_test": s["asha"]["best_test_mAP"] - s["today"]["best_test_mAP"],
            "asha_epochs_to_fifo_best_minus_1": reach,
            "asha_share_of_fifo_epochs": None if reach is None else reach / fifo_epochs,
        }
    table = {}
    for name in STUDIES:
        done = [runs[f"{name}_s{seed}"] for seed in seeds if f"{name}_s{seed}" in runs]
        if not done:
            continue
        table[name] = {
            key: mean_sd([d[key] for d in done])
            for key in ("best_test_mAP", "lead_over_best_arm", "trial_epochs_reported", "trial_epochs_computed", "wall_s")
        }
        table[name]["seeds"] = len(done)
        for arm in ARMS:
            table[name][f"arm_{arm}_test_mAP"] = mean_sd([d["arms_test_mAP"][arm] for d in done])
    return {"per_seed": per_seed, "studies": table}


def mean_sd(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def markdown(summary: dict, runs: dict, seeds: list[int]) -> str:
    lines = [
        "| study | seed | best trial: val mAP | its test mAP | ASL arm | Co-teaching arm | lead over the better arm "
        "| stopped early | trial-epochs reported | computed | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in STUDIES:
        for seed in seeds:
            r = runs.get(f"{name}_s{seed}")
            if r:
                lines.append(
                    f"| {name} | {seed} | {r['best_val_mAP']:.2f} | {r['best_test_mAP']:.2f} | {r['arms_test_mAP']['asl']:.2f} "
                    f"| {r['arms_test_mAP']['coteaching']:.2f} | {r['lead_over_best_arm']:+.2f} | {r['stopped_early']} "
                    f"| {r['trial_epochs_reported']} | {r['trial_epochs_computed']} | {r['wall_s']:.0f} |"
                )
    lines += ["", "| study | seeds | best trial's test mAP | lead over the better arm | trial-epochs computed | without sharing |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, t in summary["studies"].items():
        lines.append(
            f"| {name} | {t['seeds']} | {t['best_test_mAP'][0]:.2f} ± {t['best_test_mAP'][1]:.2f} "
            f"| {t['lead_over_best_arm'][0]:+.2f} ± {t['lead_over_best_arm'][1]:.2f} "
            f"| {t['trial_epochs_computed'][0]:.0f} | {t['trial_epochs_reported'][0]:.0f} |"
        )
    lines += ["", "| seed | asha computed / today's | asha − today, best test mAP | ASHA epochs to FIFO's best − 1 | share of FIFO's |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for seed, p in summary["per_seed"].items():
        reach = "never" if p["asha_epochs_to_fifo_best_minus_1"] is None else str(p["asha_epochs_to_fifo_best_minus_1"])
        share = "" if p["asha_share_of_fifo_epochs"] is None else f"{100 * p['asha_share_of_fifo_epochs']:.0f}%"
        lines.append(f"| {seed} | {p['asha_vs_today_computed']:.2f} | {p['asha_minus_today_test']:+.2f} | {reach} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES))
    parser.add_argument("--store", default=str(RESULTS / "study_value_runs.json"))
    parser.add_argument("--table-only", action="store_true", help="rebuild the tables from the store, run nothing")
    args = parser.parse_args(argv)
    store = Path(args.store)
    max_t = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())["schedule"]["epochs"]
    work = Path(tempfile.mkdtemp(prefix="mhss-study-value-"))
    try:
        for seed in [] if args.table_only else args.seeds:
            for name in args.studies:
                key = f"{name}_s{seed}"
                if key in load_runs(store)["runs"]:
                    continue
                data = space(name, seed, args.trials, work / "studies")
                wall = run_study(data, work, lift_check=name == "today")
                result = measure(work / "studies" / key, max_t, wall)
                save_run(store, key, result)
                print(
                    f"{key}: best trial test mAP {result['best_test_mAP']:.2f} (lead {result['lead_over_best_arm']:+.2f}), "
                    f"{result['trial_epochs_computed']} trial-epochs computed of {result['trial_epochs_reported']}, {wall:.0f} s",
                    flush=True,
                )
                shutil.rmtree(work / "studies" / key, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = load_runs(store)["runs"]
    seeds = [s for s in args.seeds if any(f"{name}_s{s}" in runs for name in STUDIES)]  # those with a finished study
    summary = summarise(runs, seeds, max_t)
    table = markdown(summary, runs, seeds)
    print(table)
    write_result(
        RESULTS / "study_value.json",
        {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "trials": args.trials, "max_t": max_t, "seeds": seeds, **summary},
    )
    (RESULTS / "study_value.md").write_text(table)
    print(f"wrote {relative(RESULTS / 'study_value.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
