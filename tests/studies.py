"""Small real studies the tests share: the demo space on a tiny budget, run through mhss-tune."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, TEST_MODEL

TINY_SPACE = {
    "seed": 1,
    "data": {"image_size": 16, "n_train": 128, "n_val": 48, "n_test": 48, "batch_size": 32},
    "noise": {"mode": "naive", "rate": 0.2},
    "model": {"name": TEST_MODEL},
    "method": {"name": "coteaching"},
    "schedule": {"epochs": 4},
    "runtime": {"device": "cpu", "threads": 1},
    "search": {
        "method.alpha": {"dist": "uniform", "low": 0.25, "high": 2.0},
        "optim.lr": {"dist": "loguniform", "low": 1e-4, "high": 3e-3},
    },
    "tune": {
        "num_samples": 5,
        "max_concurrent_trials": 2,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "search_alg": {
            "name": "hyperopt",
            "n_initial_points": 2,
            "seed": 7,
            "points_to_evaluate": [{"method.alpha": 1.0, "optim.lr": 1e-3}],
        },
        "resources": {"workers": 0, "cpus_per_worker": 1},
    },
}


# The demo space on a tiny budget: same search, scheduler and search algorithm, smaller everything
# else (see tiny_demo_space for the warm-up, q and learning rate).
DEMO_TINY = [
    f"model.name={TEST_MODEL}",
    "data.image_size=16",
    "data.n_train=128",
    "data.n_val=48",
    "data.n_test=48",
    "data.batch_size=32",
    "schedule.epochs=4",
    # runtime.threads unset, as in the demo: each trial computes with Ray's default (one thread per CPU), which
    # best_config_<study>.yaml records (tests/analysis/test_analyze.py reruns it standalone)
    "tune.scheduler.grace_period=1",
    "tune.search_alg.n_initial_points=2",
    "tune.max_concurrent_trials=2",
]


def tiny_demo_space(tmp_path):
    data = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    # q 2 and warm-ups of 2-3 epochs (warm-up >= q) fit 4 epochs, theta over both levels of q 2 (0, 1);
    # the learning rate is searched too, so that trials differ from the first epoch (during the
    # warm-up the method's own knobs change nothing, and ASHA would have nothing to cut)
    data["method"]["q"] = 2
    data["search"]["method.warmup"] = {"dist": "randint", "low": 2, "high": 4}
    data["search"]["method.theta"] = {"dist": "uniform", "low": 0.0, "high": 1.0}
    data["search"]["optim.lr"] = {"dist": "loguniform", "low": 3e-4, "high": 3e-3}
    data["tune"]["search_alg"]["points_to_evaluate"][0].update({"method.warmup": 2, "optim.lr": 1e-3})  # HyperOpt: every key
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_demo_study(tmp_path: Path, workers: int, trials: int = 5, baselines: bool = True, sets=(), env=None):
    """mhss-tune on the tiny demo space into tmp_path/studies: (storage, command, env, CompletedProcess).
    With `baselines` the demo's baseline arms (asl, coteaching) run beside the searched trials; `sets`
    are more --set overrides, `env` more environment variables."""
    storage = tmp_path / "studies"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled", **(env or {}))
    extra = [f"tune.resources.workers={workers}", f"tune.num_samples={trials}"] + ([] if baselines else ["tune.baselines=[]"]) + list(sets)
    sets = [a for s in DEMO_TINY + extra for a in ("--set", s)]
    cmd = [
        sys.executable,
        "-c",
        "from mhss_ray.cli import tune_main; tune_main()",
        "--space",
        str(tiny_demo_space(tmp_path)),
        "--storage",
        str(storage),
        *sets,
    ]
    return storage, cmd, env, subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def result_rows(storage: Path) -> dict[str, list[dict]]:
    """trial id -> the rows of its result.json, in the order Tune wrote them."""
    import json

    out = {}
    for f in storage.rglob("result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def reported_epochs(storage: Path) -> dict[str, list[int]]:
    """trial id -> the epochs in its result.json, in the order Tune wrote them."""
    return {t: [r["epoch"] for r in rows] for t, rows in result_rows(storage).items()}


def killed_space(tmp_path: Path, workers: int, trials: int = 2) -> Path:
    """A 6-epoch FIFO study, its trials all at once: the study the kill tests interrupt. 1,024 training
    images, so that an epoch of the test network lasts long enough (about a second) for a kill to land
    inside the study rather than after its end."""
    data = dict(TINY_SPACE, schedule={"epochs": 6})
    data["data"] = {**TINY_SPACE["data"], "n_train": 1024}
    data["tune"] = {
        "num_samples": trials, "max_concurrent_trials": trials, "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 3}, "resources": {"workers": workers, "cpus_per_worker": 1},
    }  # fmt: skip
    space = tmp_path / "resume.yaml"
    space.write_text(yaml.safe_dump(data))
    return space


def kill_when(cmd: list[str], env: dict, until, log: Path | None = None, settle: float = 0.0, orphans=None) -> bool:
    """Start `cmd`, wait until `until()` holds, then SIGKILL it and every Ray process it started.
    Returns False if the command ended on its own first. `orphans`: SIGKILL the driver alone first, call
    `orphans()` while the Ray processes it started live on, then kill them."""
    import signal
    import time

    out = log.open("a") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not until():
        time.sleep(0.2)
    time.sleep(settle)
    ended = proc.poll() is not None
    if not ended and orphans is not None:
        proc.kill()  # the driver alone, as `kill -9 PID` does: Ray's local cluster lives on
        proc.wait()
        orphans()
    if not ended:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    if log:
        out.close()
    return not ended


def run_killed_study(tmp_path: Path, workers: int, trials: int = 2):
    """The study of `killed_space` with the relative storage `runs/studies` (run from tmp_path), its
    mhss-tune SIGKILLed once a trial has reported epoch 2:
    (storage, command, env, snapshot of the storage right after the kill)."""
    import shutil

    # the storage path relative, as in every shipped space (runs/studies), from the user's folder:
    # each trial must still write its checkpoints into the study, not under its own working folder
    storage = tmp_path / "runs" / "studies"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    start = f"import os; os.chdir({str(tmp_path)!r}); from mhss_ray.cli import tune_main; tune_main()"
    cmd = [sys.executable, "-c", start, "--space", str(killed_space(tmp_path, workers, trials)), "--storage", "runs/studies"]
    # a second after the report: the snapshot feeds tests/analysis, which reads the trials from Tune's
    # experiment state (saved every few seconds). Ray Train's kill: tests/tune/test_warmup_share.py
    kill_when(cmd, env, lambda: any(len(e) >= 2 for e in reported_epochs(storage).values()), settle=1.0)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(storage, snapshot)
    return storage, cmd, env, snapshot


def checkpoints_outside(study: Path) -> list[str]:
    """Checkpoints the analysis tables name that are not inside the study folder (none should be)."""
    from mhss_ray.analysis.load import load_study

    named = [c for c in load_study(str(study)).trials["checkpoint"] if c]
    return [c for c in named if not str(c).startswith(str(study) + "/")] or ([] if named else ["(no checkpoint named at all)"])
