"""The shared warm-up killed at every stage, then resumed: nothing trained twice beyond one epoch, no trial
forked from a damaged prefix (the whole version of tests/tune/test_warmup_share.py's small one).

    python benchmarks/warmup_kills.py            # about 5 minutes on 2 cores; writes results/warmup_kills.json

A tiny MHSS study (3 searched trials, warm-ups of 2-3 epochs of 4, a 3-epoch prefix run) is started with
`mhss-tune` and SIGKILLed, with every Ray process it started, at one stage of its shared warm-up:

- `before-first-checkpoint`: the prefix run has started, no fork exists yet;
- `during-fork`: a fork's folder exists but its record (`done.json`) is not written yet (the copy under way);
- `after-fork`: the first fork is complete, the prefix run not yet past its next epoch;
- `fork-cut-short`: killed after the first fork, which is then cut short on disk;
- `fork-of-another-study`: killed after the first fork, which is then replaced by another study's.

Each is then resumed with `--resume` until it ends; the script checks that the study ends with rc 0, every
searched trial reports epochs 1-4 once, every fork passes its check (warmup_share.fork_problem), and that the
prefix trained no epoch more than twice (once, or once again after the kill).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mhss_ray.tune.warmup_share import DONE_FILE, FOLDER, fork_problem  # noqa: E402

SPACE = {
    "seed": 2,
    "data": {"image_size": 16, "n_train": 512, "n_val": 48, "n_test": 48, "batch_size": 32},
    "noise": {"mode": "complex", "rate": 0.2},
    "model": {"name": "resnet18"},
    "method": {"name": "mhss", "q": 2, "noise_rate_source": "given", "noise_rate": 0.1},
    "schedule": {"epochs": 4},
    "runtime": {"device": "cpu", "threads": 1},
    "search": {
        "method.alpha": {"dist": "uniform", "low": 0.5, "high": 1.5},
        "method.theta": {"dist": "uniform", "low": 0.0, "high": 1.0},
        "method.warmup": {"dist": "randint", "low": 2, "high": 4},
    },
    "tune": {
        "num_samples": 3,
        "max_concurrent_trials": 2,
        "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 5},
        "resources": {"workers": 0, "cpus_per_worker": 1},
    },
}


def rows(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for f in folder.rglob("result.json"):
        got = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if got:
            out[str(f.parent)] = got
    return out


def forks(study: Path) -> list[Path]:
    return sorted((study / FOLDER / "forks").glob("epoch_*")) if (study / FOLDER / "forks").exists() else []


STAGES = {
    "before-first-checkpoint": lambda s: (s / FOLDER).exists() and not forks(s),
    "during-fork": lambda s: any(not (f / DONE_FILE).exists() and any(f.iterdir()) for f in forks(s)),
    "after-fork": lambda s: any((f / DONE_FILE).exists() for f in forks(s)),
    "fork-cut-short": lambda s: any((f / DONE_FILE).exists() for f in forks(s)),
    "fork-of-another-study": lambda s: any((f / DONE_FILE).exists() for f in forks(s)),
}


def run_stage(stage: str, work: Path, env: dict) -> dict:
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    study = work / "studies" / "space"
    tune = "from mhss_ray.cli import tune_main; tune_main()"
    cmd = [sys.executable, "-c", tune, "--space", str(space), "--storage", str(work / "studies")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, hit = time.time() + 300, False
    while time.time() < deadline and proc.poll() is None:
        try:
            hit = STAGES[stage](study)
        except OSError:  # a folder that moved while it was listed
            hit = False
        if hit:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    damage = None
    done = [f for f in forks(study) if (f / DONE_FILE).exists()]
    if stage == "fork-cut-short" and done:
        target = next(done[0].rglob("checkpoint.pt"))
        target.write_bytes(target.read_bytes()[:1000])
        damage = str(target)
    if stage == "fork-of-another-study" and done:
        record = json.loads((done[0] / DONE_FILE).read_text())
        (done[0] / DONE_FILE).write_text(json.dumps({**record, "study": "another"}))
        damage = str(done[0] / DONE_FILE)
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    searched = [r for r in rows(study).values() if not r[0]["config"].get(FOLDER)]
    prefix_rows = [r for r in rows(study / FOLDER).values()]
    identity = {k: json.loads((forks(study)[0] / DONE_FILE).read_text())[k] for k in ("study", "config", "seed")} if forks(study) else {}
    epochs_once = len(searched) == 3 and all([r["epoch"] for r in t] == [1, 2, 3, 4] for t in searched)
    sound = [fork_problem(str(study), int(f.name.split("_")[1]), identity) is None for f in forks(study)]
    checks = {
        "rc 0": resumed.returncode == 0,
        "every searched trial reports epochs 1-4 once": epochs_once,
        "every fork sound": bool(sound) and all(sound),
        "damage said": damage is None or "training the prefix again" in resumed.stdout,
    }
    trained = [r["epoch"] for t in prefix_rows for r in t]
    return {
        "stage": stage,
        "stage_reached": hit,
        "damaged": damage,
        "prefix_epochs_reported": trained,
        "checks": checks,
        "ok": all(checks.values()) and hit,
        "stderr_tail": "" if resumed.returncode == 0 else resumed.stderr[-600:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    results = []
    for stage in args.stages:
        work = Path(tempfile.mkdtemp(prefix=f"warmup-kill-{stage}-"))
        try:
            start = time.perf_counter()
            result = run_stage(stage, work, env)
            result["seconds"] = round(time.perf_counter() - start, 1)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results.append(result)
        failed = [k for k, v in result["checks"].items() if not v]
        print(f"{stage:<24} {'ok' if result['ok'] else 'FAILED'}  reached {result['stage_reached']}  "
              f"{'failed: ' + ', '.join(failed) if failed else ''}{result['stderr_tail']}", flush=True)  # fmt: skip
    out = REPO / "benchmarks" / "results" / "warmup_kills.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
