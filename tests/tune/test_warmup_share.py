"""The shared warm-up (tune.share_warmup, mhss_ray/tune/warmup_share.py): real studies through mhss-tune.

A forked trial's rows must equal those of the same trial run alone, bit for bit on CPU; a study killed
while its prefix trains must finish with --resume, every trial with every epoch once."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from mhss_ray.analysis.load import epoch_budget, load_study
from mhss_ray.errors import UserError
from mhss_ray.tune.warmup_share import DONE_FILE, FOLDER, discard_forks, fork_problem, load_fork, save_fork

from ..conftest import REPO
from ..studies import checkpoints_outside, kill_when, reported_epochs, result_rows
from tests.conftest import TEST_MODEL

# MHSS on a tiny budget: trials differ only in what acts after the warm-up (alpha, theta, the warm-up's length)
SPACE = {
    "seed": 2,
    "data": {"image_size": 16, "n_train": 128, "n_val": 48, "n_test": 48, "batch_size": 32},
    "noise": {"mode": "complex", "rate": 0.2},
    "model": {"name": TEST_MODEL},
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
# what differs between two runs of the same training: clocks, places and Tune's own bookkeeping
NOT_COMPARED = {
    "epoch_seconds", "images_per_s", "train_seconds", "node_id", "trial_id", "timestamp", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "date", "hostname", "pid", "node_ip", "checkpoint_dir_name", "done",
    "should_checkpoint", "experiment_tag", "config", "training_iteration",
    "shared_warmup",  # the mark of a row the prefix trained (checked on its own below)
}  # fmt: skip


def study(tmp_path, name: str, *sets: str):
    space = tmp_path / f"{name}.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    storage = tmp_path / "studies"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(space), "--storage", str(storage)]
    for s in sets:
        cmd += ["--set", s]
    return storage / name, cmd, env


def by_point(folder) -> dict:
    """(alpha, theta, warm-up) -> the trial's rows without the keys that are not training results."""
    out = {}
    for rows in result_rows(folder).values():
        c = rows[0]["config"]
        if c.get(FOLDER):
            continue  # the prefix run itself (searched trials only)
        key = (c["method.alpha"], c["method.theta"], c["method.warmup"])
        out[key] = [{k: v for k, v in r.items() if k not in NOT_COMPARED} for r in rows]
    return out


def test_forked_trials_equal_the_same_trials_run_alone_bit_for_bit(tmp_path):
    shared, cmd, env = study(tmp_path, "shared")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    alone, cmd_off, env = study(tmp_path, "alone", "tune.share_warmup=off")
    done_off = subprocess.run(cmd_off, env=env, capture_output=True, text=True, timeout=900)
    assert done_off.returncode == 0, done_off.stdout[-3000:] + done_off.stderr[-3000:]

    assert "shared warm-up: done" in done.stdout and "shared warm-up" not in done_off.stdout.replace("shared warm-up: off", "")
    assert "starting from the shared warm-up after epoch" in done.stdout + done.stderr
    forks = sorted(p.parent.name for p in (shared / FOLDER / "forks").glob(f"*/{DONE_FILE}"))
    assert forks == ["epoch_2", "epoch_3"]
    rows, rows_off = by_point(shared), by_point(alone)
    assert len(rows) == 3 and rows.keys() == rows_off.keys()  # the same sampled points in both studies
    for point in rows:
        assert [r["epoch"] for r in rows[point]] == [1, 2, 3, 4]  # every epoch, the warm-up's copied from the prefix
        assert rows[point] == rows_off[point], point  # bit for bit: every loss, mAP and label figure
    forked = [t for t in result_rows(shared).values() if not t[0]["config"].get(FOLDER)]  # not the prefix run itself
    assert len(forked) == 3
    for trial in forked:  # the rows a forked trial took from the prefix are marked, its own are not
        warmup = trial[0]["config"]["method.warmup"]
        assert [bool(r.get("shared_warmup")) for r in trial] == [r["epoch"] <= warmup for r in trial]
    warmups = sum(trial[0]["config"]["method.warmup"] for trial in forked)
    budget = epoch_budget(load_study(str(shared)), shared.name)  # the analysis counts the prefix's 3 epochs once
    assert (budget["epochs_run"], budget["epochs_trained"]) == (12, 12 - warmups + 3), budget


def test_a_study_killed_in_its_shared_warm_up_finishes_with_resume(tmp_path):
    folder, cmd, env = study(tmp_path, "killed")
    prefix = folder / FOLDER

    def nothing_written_after_the_driver_died():
        # the prefix run's trial outlives a SIGKILLed driver (Ray's local cluster does): it must not go on
        # writing into the study (it wrote the next fork 2.5 s later), where a --resume would run beside it
        killed_at = time.time()
        time.sleep(6)  # epochs of this tiny prefix take about a second: without the check, epoch 3 came 2.5 s after the kill
        # on a busy machine epoch 3 may have been checked and written before the kill landed: judge by when
        written = {p.parent.name: p.stat().st_mtime - killed_at for p in (prefix / "forks").glob(f"*/{DONE_FILE}")}
        assert all(after < 1.0 for after in written.values()), written  # 1 s: a check, then the fork's write

    # killed as soon as the prefix's trial itself has written the fork after epoch 2 (its result row may come later)
    forked_two = lambda: (prefix / "forks" / "epoch_2" / DONE_FILE).exists()  # noqa: E731
    assert kill_when(cmd, env, forked_two, orphans=nothing_written_after_the_driver_died)
    assert not list(folder.glob("experiment_state-*"))  # killed before the trials started
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = {t: e for t, e in reported_epochs(folder).items() if t not in reported_epochs(prefix)}
    assert len(trials) == 3 and all(e == [1, 2, 3, 4] for e in trials.values()), trials
    loaded = load_study(str(folder))
    assert len(loaded.trials) == 3  # the analysis reads the study's trials, not the prefix run
    record = json.loads((prefix / "forks" / "epoch_3" / DONE_FILE).read_text())
    assert record["epoch"] == 3 and record["study"] == "killed" and record["seed"] == SPACE["seed"] and record["files"]

    # a fork cut short after the study finished: --resume trains the prefix again instead of trusting it
    checkpoint = next(p for p in (prefix / "forks" / "epoch_2").rglob("*.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    mended = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert mended.returncode == 0, mended.stdout[-3000:] + mended.stderr[-3000:]
    assert f"epoch_2: its file {checkpoint.relative_to(prefix / 'forks' / 'epoch_2')} was changed or cut short" in mended.stdout
    assert "training the prefix again" in mended.stdout
    assert fork_problem(str(folder), 2, record_identity(record)) is None


def record_identity(record: dict) -> dict:
    return {k: record[k] for k in ("study", "config", "seed")}


def test_a_trial_never_starts_from_a_damaged_or_foreign_fork(tmp_path):
    """The fork's record (study, base config, seed, epoch, a digest of every file) is checked on the bytes
    the trial loads: a truncated, replaced or foreign fork is refused in one line naming it and the mend."""
    made = tmp_path / "made"
    made.mkdir()
    (made / "checkpoint.pt").write_bytes(os.urandom(4096))
    (made / "reported.json").write_text("[]")
    study, ours = str(tmp_path / "study"), {"study": "study", "config": "abc", "seed": 2}
    for epoch in (2, 3):
        save_fork(study, epoch, str(made), ours)
    load_fork(study, 2, str(tmp_path / "ok"), ours)
    assert (tmp_path / "ok" / "checkpoint.pt").read_bytes() == (made / "checkpoint.pt").read_bytes()

    forks = tmp_path / "study" / FOLDER / "forks"
    damages = [
        ("cut", lambda: (forks / "epoch_2" / "checkpoint.pt").write_bytes(b"x" * 100), "its file checkpoint.pt was changed or cut short"),
        ("epoch", lambda: shutil.copytree(forks / "epoch_3", forks / "epoch_2", dirs_exist_ok=True), "written for epoch 3, not 2"),
        ("gone", lambda: (forks / "epoch_2" / "reported.json").unlink(), "its file reported.json is gone"),
    ]
    for name, damage, words in damages:
        save_fork(study, 2, str(made), ours)
        damage()
        with pytest.raises(UserError) as refused:
            load_fork(study, 2, str(tmp_path / name), ours)
        line = str(refused.value)
        assert words in line and line.startswith(str(forks / "epoch_2")) and "--resume" in line and "\n" not in line, line
    save_fork(study, 2, str(made), ours)
    for key, other in (("study", "another"), ("config", "def"), ("seed", 3)):
        with pytest.raises(UserError, match=f"written for {key}"):
            load_fork(study, 2, str(tmp_path / f"foreign-{key}"), {**ours, key: other})
    discard_forks(study, [2])
    assert fork_problem(study, 2, ours) == "missing" and fork_problem(study, 3, ours) is None
    with pytest.raises(UserError, match="it is missing"):
        load_fork(study, 2, str(tmp_path / "missing"), ours)


def test_a_ray_train_study_forked_from_a_ray_train_prefix_resumes_from_its_checkpoints(tmp_path):
    """Ray Train end to end in one study (each Train run starts its own worker, the slow part on CPU): the
    prefix trained by Ray Train, its forks loaded by Ray Train trials, and a SIGKILL once a forked trial has
    trained an epoch of its own, then --resume from the trials' checkpoints. The storage is relative, as in
    every shipped space: each Train run and its checkpoints must live in the study (resolved in a trial's own
    process they landed under Ray's session folder, and --resume restarted every trial at epoch 1)."""
    folder, cmd, env = study(tmp_path, "train", "tune.resources.workers=1", "tune.num_samples=2", "schedule.epochs=6")
    cmd[2] = f"import os; os.chdir({str(tmp_path)!r}); from mhss_ray.cli import tune_main; tune_main()"
    cmd[cmd.index("--storage") + 1] = "studies"

    def searched() -> dict[str, list[dict]]:
        prefix = set(result_rows(folder / FOLDER))
        return {t: rows for t, rows in result_rows(folder).items() if t not in prefix}

    trained_its_own = lambda: any(not r.get("shared_warmup") for rows in searched().values() for r in rows)  # noqa: E731
    log = tmp_path / "killed.log"
    assert kill_when(cmd, env, trained_its_own, log), "the study ended before the kill"
    assert "shared warm-up: done" in log.read_text()
    before = {t: [r["epoch"] for r in rows] for t, rows in searched().items()}
    assert before and min(len(e) for e in before.values()) < 6, f"the kill should land mid-trial: {before}"

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert sorted(p.parent.name for p in (folder / FOLDER / "forks").glob(f"*/{DONE_FILE}")) == ["epoch_2", "epoch_3"]
    rows = searched()
    assert len(rows) == 2, rows.keys()
    prefix = next(iter(result_rows(folder / FOLDER).values()))
    for trial_id, trial in rows.items():
        epochs = [r["epoch"] for r in trial]
        # the trial went on from its checkpoint: no second fork, no restart at epoch 1 after the kill. Every
        # epoch on record, none skipped: Ray Train persists an epoch's checkpoint before Tune hears of it, and
        # the forwarding queue holds one epoch while the next one's put waits, so a kill can leave persisted
        # epochs unreported until the restarted trial reports them from their checkpoints' metrics
        assert epochs.count(1) == 1 and epochs[: len(before.get(trial_id, []))] == before.get(trial_id, []), epochs
        assert sorted(set(epochs)) == [1, 2, 3, 4, 5, 6] and epochs[-1] == 6 and len(epochs) <= 8, epochs
        # the rows each trial copied from the prefix are the prefix's own (every warm-up lasts 2 epochs or more)
        assert [r["val_mAP"] for r in trial[:2]] == [r["val_mAP"] for r in prefix[:2]]
    assert checkpoints_outside(folder) == [] and list(folder.glob("train-*/checkpoint_*"))
