"""A real study on a real local Ray cluster (CPU): ASHA on epoch, HyperOpt, every trial reports."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import TEST_MODEL
from tests.studies import (
    DEMO_TINY,  # noqa: F401
    TINY_SPACE,  # noqa: F401
    checkpoints_outside,
    kill_when,
    reported_epochs,
    run_demo_study,
    tiny_demo_space,  # noqa: F401
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "ray-train"])
def test_demo_space_runs_with_asha_and_hyperopt(tmp_path, workers, request):
    if workers:
        # Another Ray instance on the machine: Train's placement-group cleaner must still find this
        # study's cluster, or the placement groups of ASHA-stopped trials leak and the study hangs.
        from ray.cluster_utils import Cluster

        other = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        request.addfinalizer(other.shutdown)
        trials, arms = 4, 0  # each Ray Train run starts its own workers: one wave of two trials fewer, no arms
        storage, cmd, env, proc = run_demo_study(tmp_path, workers, trials, baselines=False)
    else:
        trials, arms = 5, 2  # the demo's baseline arms: asl, coteaching
        storage, cmd, env, proc = request.getfixturevalue("demo_study")  # shared with tests/analysis
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "best trials by val_mAP" in proc.stdout and str(storage / "demo") in proc.stdout

    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(storage / "demo"))
    frames = analysis.trial_dataframes
    assert len(frames) == trials + arms
    arm_ids = {t.trial_id: t.config["baseline"] for t in analysis.trials if "baseline" in t.config}
    assert sorted(arm_ids.values()) == sorted(["asl", "coteaching"][:arms])
    for trial_id in arm_ids:  # ASHA never stops an arm
        assert list(frames[trial_id]["epoch"]) == [1, 2, 3, 4]
    assert all(
        v is None for t in analysis.trials if t.trial_id in arm_ids for k, v in t.config.items() if k != "baseline"
    )  # HyperOpt: nothing searched
    if arms:
        assert "baseline asl: val_mAP" in proc.stdout
    check_console(proc, sorted(frames), trials + arms, wandb=not workers)  # the shared demo study logs to W&B
    frames = {k: v for k, v in frames.items() if k not in arm_ids}
    epochs = {trial_id: df["epoch"].max() for trial_id, df in frames.items()}
    for df in frames.values():
        assert {"epoch", "val_mAP", "selection_precision"} <= set(df.columns)
        assert list(df["epoch"]) == list(range(1, len(df) + 1))  # one report per epoch, in order
    assert min(epochs.values()) < 4 <= max(epochs.values()), f"ASHA should stop some trials early: {epochs}"
    configs = pd.DataFrame([t.config for t in analysis.trials if t.trial_id not in arm_ids])
    first = (configs["method.alpha"] == 1.0) & (configs["method.theta"] == 0.2) & (configs["method.noise_rates[9]"] == 0.1)
    assert first.sum() == 1  # points_to_evaluate ran, once
    assert (
        configs["method.alpha"].nunique() == trials and configs["method.noise_rates[0]"].nunique() == trials
    )  # HyperOpt's own suggestions

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # same name: refused, nothing touched
    assert again.returncode == 2 and "already holds a study; pass --resume" in again.stderr and "Traceback" not in again.stderr
    assert len(ExperimentAnalysis(str(storage / "demo")).trials) == trials + arms


def check_console(proc, trial_ids: list[str], n_trials: int, wandb: bool) -> None:
    """What a user sees: where to watch it, Tune's table with the metric and the searched values under
    short names, every epoch line once and starting with its trial's id, no error line on a healthy run
    (with W&B, but for what Ray's W&B logging actors print, docs/usage.md)."""
    out = proc.stdout
    assert "watch it live:" in out and "tensorboard --logdir" in out
    headers = [line for line in out.splitlines() if line.startswith("| Trial name")]
    assert headers, out[-3000:]
    columns = [c.strip() for c in headers[-1].strip("|").split("|")]
    assert {"val_mAP", "epoch", "alpha", "theta", "warmup", "lr", "eps (mean)"} <= set(columns), columns
    assert max(len(line) for line in out.splitlines() if line.startswith("|")) < 200  # was ~430 with every per-class rate
    epoch_lines = re.findall(r"\[([0-9a-f]{8})\] (epoch \d+/\d+ .*)", out)
    assert {t for t, _ in epoch_lines} == set(trial_ids)  # every trial, named by its id
    assert len(epoch_lines) == len(set(epoch_lines)), "an epoch line printed twice"
    assert len(epoch_lines) == sum(1 for line in out.splitlines() if re.search(r"\bepoch \d+/\d+  loss", line))  # none without its id
    assert not re.search(r"epoch \d+/\d+  loss", proc.stderr), "epoch lines on stderr as well"
    lines = without_ray_sigterm(proc.stderr.splitlines())
    errors = [line for line in lines if re.search(r"\bE \d+ \d+\]|Traceback|Error", line)]
    if wandb:  # Ray's W&B integration: a line about its logging actor, and W&B's own teardown when that actor ends
        actor = r"_WandbLoggingActor|_WrittenOutWandbActor"  # Ray's, and ours that waits for W&B (tune/wandb_logger.py)
        errors = [line for line in errors if not re.search(rf"'({actor})'|\(({actor}) pid=", line)]
    assert not errors, errors[:5]
    assert f"Number of trials: {n_trials}/{n_trials}" in out


def without_ray_sigterm(lines: list[str]) -> list[str]:
    """`lines` less the tracebacks of Ray's own SIGTERM handler. When Tune is done with a trial it removes
    the trial's placement group, and the raylet sends SIGTERM to the processes still in it; Ray's handler
    raises SystemExit in whatever the process's main thread runs, and where that is a weakref callback
    Python prints the exception it ignores: `Exception ignored in ... sigterm_handler ... SystemExit: 1`,
    under the prefix of a Ray process: the block of that process's lines around its handler, however
    other processes' lines interleave. Any other traceback stays, the driver's own included."""
    drop: set[int] = set()
    for i, line in enumerate(lines):
        if "in sigterm_handler" not in line or not line.startswith("\x1b[36m("):
            continue
        prefix = line.split(")", 1)[0] + ")"
        own = [j for j, other in enumerate(lines) if other.startswith(prefix)]  # this process's lines
        k = own.index(i)
        before, after = own[max(k - 8, 0) : k + 1], own[k : k + 8]  # the block is 7 lines
        first = next((j for j in reversed(before) if "Exception ignored in" in lines[j]), None)
        last = next((j for j in after if "SystemExit" in lines[j]), None)
        if first is not None and last is not None:
            drop.update(j for j in own if first <= j <= last)
    return [line for j, line in enumerate(lines) if j not in drop]


def test_study_killed_three_times_ends_like_an_uninterrupted_one(tmp_path, killed_study):
    """SIGKILL mhss-tune (and its Ray) at three different moments of one study, `--resume` after
    each: mid-epoch, a second after a report (the shared fixture); while the restored trials load
    their checkpoints; right at a report, when the checkpoint is written and the result may not be.
    The study then ends with the trials, configs and epochs of the same study run without a kill."""
    storage, cmd, env, _ = killed_study
    first = reported_epochs(storage)
    assert first and max(len(e) for e in first.values()) < 6, f"kill 1 should land mid-trial: {first}"

    log = tmp_path / "resume-2.log"
    restarted = lambda: log.exists() and re.search(r"\] restoring its checkpoint", log.read_text())  # noqa: E731
    assert kill_when(cmd + ["--resume"], env, restarted, log), "kill 2: the study ended before a trial restarted"
    second = reported_epochs(storage)
    assert {t: e[: len(first[t])] for t, e in second.items() if t in first} == first  # nothing lost or rewritten

    # a new epoch on record: a longer list, not merely a different one (while Tune syncs a restored
    # trial's result.json into the storage the file is briefly empty, and a kill then would be the test's doing)
    reported = lambda: any(len(e) > len(second.get(t, [])) for t, e in reported_epochs(storage).items())  # noqa: E731
    assert kill_when(cmd + ["--resume"], env, reported, tmp_path / "resume-3.log"), "kill 3: the study ended first"
    third = reported_epochs(storage)
    assert max(len(e) for e in third.values()) < 6, third

    # the last rerun as a job scheduler would do it (KubeRay's backoffLimit): resumes what it finds
    resumed = subprocess.run(cmd + ["--resume-or-start"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Restoring the run from the latest experiment state" in resumed.stdout + resumed.stderr

    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    ref_cmd = [*cmd[:-2], "--storage", str(reference / "studies"), "--resume-or-start"]  # same space, an empty folder: starts
    done = subprocess.run(ref_cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Restoring the run" not in done.stdout + done.stderr

    from mhss_ray.analysis.load import load_study

    killed, clean = load_study(str(storage / "resume")), load_study(str(reference / "studies" / "resume"))
    assert len(killed.trials) == len(clean.trials) == 2
    searched = ["method.alpha", "optim.lr"]
    as_set = lambda t: sorted(map(tuple, t[searched].round(12).values.tolist()))  # noqa: E731
    assert as_set(killed.trials) == as_set(clean.trials)  # the same configurations: the search resumed, not restarted
    assert list(killed.trials["outcome"]) == list(clean.trials["outcome"]) == ["completed", "completed"]
    assert sorted(killed.trials["epochs"]) == sorted(clean.trials["epochs"]) == [6, 6]
    # every epoch on record and none skipped. Tune restores a trial from the checkpoint named in its
    # last experiment snapshot, forced once a trial has checkpointed num_to_keep times since the
    # previous one (1 now: the best is kept beside the latest; it was 2): a kill can redo (and re-report) epochs. The analysis tables
    # keep the last report of an epoch, so they hold each epoch once. Seen: [1, 2, 3, 3, 4, 5, 6].
    final = reported_epochs(storage)
    for trial_id, epochs in final.items():
        # every epoch, none skipped: a checkpoint --resume puts in place of a deleted one may be an epoch
        # newer than the state, and the trial then reports that epoch again (seen before that: [1, 2, 4, 5, 6])
        assert sorted(set(epochs)) == [1, 2, 3, 4, 5, 6] and epochs[-1] == 6 and len(epochs) <= 6 + 2 * 3, (trial_id, epochs)
        assert epochs[: len(third.get(trial_id, []))] == third.get(trial_id, [])  # what was on record stays
    assert len(killed.epochs) == 12 and not killed.epochs.duplicated(["trial_id", "epoch"]).any()
    assert checkpoints_outside(storage / "resume") == []  # relative storage: resolved once, in the driver
    # the checkpoint scratch folders the kills left behind were cleared by the resumed trials
    import tempfile

    assert not [t for t in final if (Path(tempfile.gettempdir()) / f"mhss-ckpt-{t}").exists()]


def test_sewerml_space_runs_from_a_relative_data_root(tmp_path, cli_env):
    """The shipped Sewer-ML space on a fixture, as a user runs it: data.root relative to where
    mhss-tune starts (Tune runs every trial in its own folder), F2-CIW as the metric. In-process
    trials: the folder change is Tune's, the same for Ray Train trials, and this is 40 s quicker."""
    from mhss_ray.data import fixtures
    from tests.conftest import REPO

    fixtures.write_sewerml(tmp_path / "sewer", n_train=40, n_val=12)
    # the shipped space, its warm-up and theta searches left out: 2 epochs hold neither its warm-ups
    # nor a history long enough for theta to decide anything
    space = yaml.safe_load((REPO / "search_spaces" / "sewerml.yaml").read_text())
    for key in ("method.warmup", "method.theta"):
        del space["search"][key]
        for point in space["tune"]["search_alg"].get("points_to_evaluate") or []:
            point.pop(key, None)
    (tmp_path / "sewerml.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    sets = [
        "method.q=1", "method.warmup=1",
        "data.root=sewer", "data.image_size=32", "data.batch_size=16", "data.num_workers=0", f"model.name={TEST_MODEL}",
        "schedule.epochs=2", "runtime.device=cpu", "runtime.threads=1", "tune.num_samples=2", "tune.scheduler.name=fifo",
        "tune.search_alg.name=random", "tune.search_alg.points_to_evaluate=null", "tune.max_concurrent_trials=2",
        "tune.resources.workers=0", "tune.resources.cpus_per_worker=1", "tune.resources.gpu_per_worker=0", "tune.storage_path=studies",
    ]  # fmt: skip
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(tmp_path / "sewerml.yaml")]
    cmd += [a for s in sets for a in ("--set", s)]
    env = dict(cli_env, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(tmp_path / "studies" / "sewerml"))
    frames = analysis.trial_dataframes
    assert len(frames) == 2 + 2  # and the shipped baseline arms, through random search's points
    assert sorted(t.config.get("baseline") or "" for t in analysis.trials) == ["", "", "asl", "coteaching"]
    for df in frames.values():
        assert list(df["epoch"]) == [1, 2]
        assert df["val_F2_CIW"].between(0, 100).all() and df["test_F1_normal"].between(0, 100).all()
