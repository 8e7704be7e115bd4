"""Same behaviour before and after a refactor: seeded runs, a study and its analysis, compared.

    python benchmarks/same_behaviour.py run --out DIR            # with the code as it is now
    python benchmarks/same_behaviour.py analyze --study DIR/study --out DIR2   # another code's analysis of DIR's study
    python benchmarks/same_behaviour.py compare BEFORE AFTER    # every difference; exit 1 if any

`run` trains ten seeded `mhss-train` runs (every method; estimated, given and oracle rates; split polarity
rates; a restart; EMA), applies `mhss-predict` and `mhss-audit` (with a review sheet) to one of them, runs
a 4-trial in-process study with two baseline arms and analyses it with `mhss-analyze`. `compare` reads two
such folders: `metrics.jsonl` line by line without the timing fields (no two runs share them) and
`config.yaml`, the predictions, the audit and the sheet byte for byte; the study's epoch rows without trial
ids, nodes and timing; the analysis tables (`trials`, `epochs`) without those columns, and the best config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TIMING = {"images_per_s", "train_seconds", "epoch_seconds"}
SMALL = [
    "data.n_train=256", "data.n_val=64", "data.n_test=64", "data.image_size=16", "data.batch_size=32", "runtime.threads=1",
    "noise.mode=complex", "model.name=test_resnet",
]  # fmt: skip
RUNS = {
    "asl": ["method.name=asl", "schedule.epochs=4"],
    "asl-clean": ["method.name=asl", "noise.mode=none", "schedule.epochs=4"],
    "coteaching": ["method.name=coteaching", "method.noise_rate_source=estimated", "schedule.epochs=5", "method.t_k=2"],
    "coteaching-split": ["method.name=coteaching", "method.polarity_rates=split", "schedule.epochs=5", "method.t_k=2"],
    "coselfie": [
        "method.name=coselfie", "method.noise_rate_source=estimated", "schedule.epochs=6", "method.t_k=2", "method.warmup=2", "method.q=2",
    ],
    "mhss": [
        "method.name=mhss", "method.noise_rate_source=estimated", "schedule.epochs=6", "method.t_k=2", "method.warmup=2",
        "method.q=2", "method.correction_budget=true",
    ],
    "mhss-given": [
        "method.name=mhss", "method.noise_rate_source=given", "method.noise_rate=0.15", "schedule.epochs=5", "method.warmup=2",
        "method.q=2",
    ],
    "mhss-restart": ["method.name=mhss", "schedule.epochs=8", "method.restarts=1", "method.warmup=2", "method.q=2"],
    "mhss-ema": ["method.name=mhss", "schedule.epochs=5", "method.warmup=2", "method.q=2", "model.ema=true"],
    "disc": ["method.name=disc", "schedule.epochs=5"],
}  # fmt: skip
STUDY = {
    "search": {"method.alpha": {"dist": "uniform", "low": 0.5, "high": 1.5}, "method.theta": {"dist": "uniform", "low": 0.0, "high": 1.0}},
    "tune": {
        "num_samples": 4, "max_concurrent_trials": 2, "baselines": ["asl", "coteaching"], "scheduler": {"name": "fifo"},
        "search_alg": {"name": "hyperopt", "seed": 0, "n_initial_points": 2}, "resources": {"workers": 0, "cpus_per_worker": 1},
        "storage_path": "studies", "share_warmup": "off",
    },
}  # fmt: skip
VOLATILE = {  # columns of Tune's and the analysis's rows that no two runs share
    "trial_id", "node", "node_ip", "hostname", "pid", "date", "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "training_iteration", "checkpoint", "best_checkpoint", "logdir", "path", "trial_folder", "started",
    "ended", "experiment_tag", "study_path", "checkpoint_dir_name", "warmup_computed", "node_id",
}  # fmt: skip


def cli(main: str, *args, cwd: Path | None = None) -> None:
    cmd = [sys.executable, "-c", f"from mhss_ray.cli import {main}; {main}()", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{main} {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")


def sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


MARK = "same_behaviour.json"  # in every --out this script made: it replaces files only inside such a folder


def own_folder(out: Path) -> None:
    """`out` new, empty, or made by this script before; anything else (a user's folder) is refused, untouched."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / MARK).is_file():
        raise SystemExit(f"--out {out}: exists and was not written by same_behaviour.py; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).write_text(json.dumps({"written_by": "benchmarks/same_behaviour.py"}) + "\n")


def run(out: Path) -> None:
    own_folder(out)
    base = REPO / "benchmarks" / "base.yaml"
    for name, items in RUNS.items():
        if (out / name / "summary.json").is_file():
            continue  # trained by an earlier call that stopped later on
        shutil.rmtree(out / name, ignore_errors=True)
        cli("train_main", "--config", base, "--out", out / name, *sets(SMALL + items))
        print(f"trained {name}", flush=True)
    for name in ("predictions.csv", "predictions.thresholds.csv", "predictions.metrics.csv", "review.csv", "audit.csv"):
        (out / name).unlink(missing_ok=True)
    cli("predict_main", "--from", out / "mhss", "--images", "test", "--out", out / "predictions.csv")
    cli("audit_main", "--from", out / "mhss", "--review", out / "review.csv", "--sample", "5")
    cli("audit_main", "--from", out / "mhss", "--out", out / "audit.csv")
    print("predicted and audited mhss", flush=True)
    space = yaml.safe_load(base.read_text())
    for item in SMALL + RUNS["mhss-given"]:
        key, value = item.split("=", 1)
        section, field = key.split(".")
        space.setdefault(section, {})[field] = yaml.safe_load(value)
    space.update(STUDY)
    shutil.rmtree(out / "studies", ignore_errors=True)
    (out / "space.yaml").write_text(yaml.safe_dump(space))
    cli("tune_main", "--space", "space.yaml", cwd=out)
    shutil.rmtree(out / "analysis", ignore_errors=True)  # inside this script's own folder
    analyze(out / "studies" / "space", out / "analysis")
    print(f"study and analysis in {out}", flush=True)


def analyze(study: Path, out: Path) -> None:
    cli("analyze_main", study, "--out", out)


def strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING and k not in VOLATILE}


def study_rows(study: Path) -> list:
    """Each trial's epoch rows in a stable order (by its config), without ids, nodes and timing."""
    trials = []
    for result in sorted(study.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        rows = [dict(strip(r), config=r.get("config")) for r in rows]
        trials.append(rows)
    return sorted(trials, key=lambda rows: json.dumps(rows[0]["config"], sort_keys=True) if rows else "")


def table(path: Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(path)
    frame = frame[[c for c in frame.columns if c not in VOLATILE and c not in TIMING and not c.startswith("time")]]
    keys = [c for c in ("method", "baseline", "epoch") if c in frame.columns] + [c for c in frame.columns if c.startswith("config/")]
    rows = frame.astype(str).to_dict("records")
    return sorted(rows, key=lambda r: json.dumps({k: r.get(k) for k in keys} | r, sort_keys=True))


def compare(before: Path, after: Path) -> int:
    problems = []

    def same(what: str, a, b) -> None:
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):  # NaN equals NaN here
            problems.append(what)

    for name in RUNS:
        lines = [[strip(json.loads(line)) for line in (side / name / "metrics.jsonl").read_text().splitlines()] for side in (before, after)]
        same(f"{name}/metrics.jsonl", *lines)
        configs = [(side / name / "config.yaml").read_text().replace(str(side.resolve()), "<folder>") for side in (before, after)]
        same(f"{name}/config.yaml", *configs)  # byte for byte but for the folder it ran in (data.cache_dir)
    for name in ("predictions.csv", "predictions.thresholds.csv", "predictions.metrics.csv", "audit.csv", "review.csv"):
        same(name, *((side / name).read_bytes() for side in (before, after)))
    same("study epoch rows", *(study_rows(side / "studies" / "space") for side in (before, after)))
    for name in ("trials.parquet", "epochs.parquet"):
        found = [next(iter(sorted((side / "analysis").rglob(name))), None) for side in (before, after)]
        if None in found:
            problems.append(f"analysis {name} missing")
            continue
        same(f"analysis {name}", *(table(p) for p in found))
    configs = [sorted((side / "analysis").rglob("best_config*.yaml")) for side in (before, after)]
    same("analysis best config", *([p.read_text() for p in c] for c in configs))
    for p in problems:
        print(f"differs: {p}")
    print(f"{len(RUNS)} runs, predictions, audit, review sheet, study rows, analysis tables: "
          + ("identical" if not problems else f"{len(problems)} differ"))  # fmt: skip
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("--out", type=Path, required=True)
    a = sub.add_parser("analyze")
    a.add_argument("--study", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out.resolve())
    elif args.command == "analyze":
        if args.out.exists():
            raise SystemExit(f"--out {args.out}: exists; the analysis goes to a new folder")
        analyze(args.study.resolve(), args.out.resolve())
    else:
        raise SystemExit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
