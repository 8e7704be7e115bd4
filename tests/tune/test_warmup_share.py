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


def test_forked_trials_equal_the_same_trials_trained_alone_bit_for_bit(tmp_path, capsys):
    from mhss_ray.cli import tune_main
    from mhss_ray.train.loop import Trainer
    from mhss_ray.tune.space import load_space

    shared, cmd, env = study(tmp_path, "shared")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "shared warm-up: done" in done.stdout and "starting from the shared warm-up after epoch" in done.stdout + done.stderr
    forks = sorted(p.parent.name for p in (shared / FOLDER / "forks").glob(f"*/{DONE_FILE}"))
    assert forks == ["epoch_2", "epoch_3"]
    spec = load_space(tmp_path / "shared.yaml")
    forked = [t for t in result_rows(shared).values() if not t[0]["config"].get(FOLDER)]  # not the prefix run itself
    assert len(forked) == 3
    for trial in forked:
        warmup = trial[0]["config"]["method.warmup"]
        assert [r["epoch"] for r in trial] == [1, 2, 3, 4]  # every epoch, the warm-up's copied from the prefix
        assert [bool(r.get("shared_warmup")) for r in trial] == [r["epoch"] <= warmup for r in trial]  # those marked
        # bit for bit as the same point trained alone (mhss-train's Trainer): every loss, mAP and label figure
        point = {k: trial[0]["config"][k] for k in ("method.alpha", "method.theta", "method.warmup")}
        for row, own in zip(trial, trained_alone(Trainer(spec.trial_config(point))), strict=True):
            assert as_json(row, own) == as_json(own, own), (point, own["epoch"])
    warmups = sum(trial[0]["config"]["method.warmup"] for trial in forked)
    budget = epoch_budget(load_study(str(shared)), shared.name)  # the analysis counts the prefix's 3 epochs once
    assert (budget["epochs_run"], budget["epochs_trained"]) == (12, 12 - warmups + 3), budget

    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:  # off: every trial trains its own warm-up, as --dry-run says first
        tune_main(["--space", str(tmp_path / "shared.yaml"), "--dry-run", "--set", "tune.share_warmup=off"])
    assert ended.value.code == 0 and "shared warm-up: off (tune.share_warmup)" in capsys.readouterr().out


def test_at_the_onset_trials_fork_where_the_prefix_found_it_and_equal_the_same_trials_trained_alone(tmp_path):
    """method.onset: plateau: no one knows the onset before training, so the prefix trains until its own and
    keeps one fork there; every trial starts from it (the searched keys act only after the onset), and its
    rows equal those of the same point trained alone in-process (mhss-train's Trainer), bit for bit on CPU."""
    from mhss_ray.train.loop import Trainer
    from mhss_ray.tune.space import load_space

    data = json.loads(json.dumps(SPACE))
    del data["search"]["method.warmup"]  # a fixed warm-up and the onset rule exclude each other
    data["method"].update(onset="plateau", onset_patience=1)
    # 256 images at lr 0.01: the tiny network learns enough by epoch 3 for its held-out mAP to stall at 4 (128 at
    # 0.001 never leave chance in 8 epochs, and the onset never comes)
    data["data"]["n_train"], data["optim"], data["schedule"]["epochs"] = 256, {"lr": 0.01}, 8
    data["tune"]["num_samples"] = 2
    space = tmp_path / "onset.yaml"
    space.write_text(yaml.safe_dump(data))
    storage = tmp_path / "studies"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(space), "--storage", str(storage)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = storage / "onset"
    forks = [int(p.parent.name.removeprefix("epoch_")) for p in (folder / FOLDER / "forks").glob(f"*/{DONE_FILE}")]
    assert "shared warm-up: training until its onset (at most 8 epochs)" in done.stdout
    assert len(forks) == 1 and f"after epoch {forks[0]} (its onset)" in done.stdout, done.stdout[-3000:]
    onset = forks[0]
    prefix = next(iter(result_rows(folder / FOLDER).values()))
    assert [r["epoch"] for r in prefix] == list(range(1, onset + 1)) and prefix[-1].get("onset") == onset  # it stopped there
    assert onset < 8, "the tiny network should reach its onset within 8 epochs, or the forks test nothing"

    spec = load_space(space)
    trials = [rows for rows in result_rows(folder).values() if not rows[0]["config"].get(FOLDER)]
    assert len(trials) == 2
    for rows in trials:
        assert [r["epoch"] for r in rows] == list(range(1, 9))
        assert [bool(r.get("shared_warmup")) for r in rows] == [r["epoch"] <= onset for r in rows]
        point = {k: rows[0]["config"][k] for k in ("method.alpha", "method.theta")}
        for forked, own in zip(rows, trained_alone(Trainer(spec.trial_config(point))), strict=True):
            assert as_json(forked, own) == as_json(own, own), (point, own["epoch"])
    budget = epoch_budget(load_study(str(folder)), folder.name)  # the prefix's epochs counted once
    assert (budget["epochs_run"], budget["epochs_trained"]) == (16, 16 - 2 * onset + onset), budget


def trained_alone(trainer) -> list[dict]:
    rows: list[dict] = []
    trainer.run(lambda metrics, _: rows.append(metrics), log=lambda line: None)
    return rows


def as_json(row: dict, keys: dict) -> str:
    """The training results of `row` among `keys`, as JSON writes them (NaN equals NaN; a float32 its float)."""
    return json.dumps({k: float(row[k]) if isinstance(row[k], float) or hasattr(row[k], "dtype") else row[k]
                       for k in sorted(keys) if k not in NOT_COMPARED})  # fmt: skip


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


def test_asha_cuts_after_the_shared_onset(tmp_path):
    """Before the shared onset every trial reports the prefix's rows: ASHA's first cut waits for the epoch after it."""
    from mhss_ray.tune.space import load_space
    from mhss_ray.tune.study import asha_grace

    data = json.loads(json.dumps(SPACE))
    del data["search"]["method.warmup"]
    data["method"].update(onset="plateau")
    data["schedule"]["epochs"] = 8
    data["tune"]["scheduler"] = {"name": "asha", "grace_period": 2, "reduction_factor": 2}
    space = tmp_path / "asha.yaml"
    space.write_text(yaml.safe_dump(data))
    spec = load_space(space, plan_only=True)
    assert spec.warmup_plan.at_onset and spec.warmup_plan.forks == ()
    assert asha_grace(spec) == 2  # the onset not known yet: the space's own
    onset = spec.warmup_plan
    for fork, grace in ((1, 2), (2, 3), (5, 6), (8, 8)):
        spec.warmup_plan = onset.with_fork(fork)
        assert asha_grace(spec) == grace, fork
