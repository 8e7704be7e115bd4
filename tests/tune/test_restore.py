"""A resume after a driver was killed between Tune deleting a checkpoint (num_to_keep) and saving its
state: the checkpoint the state names is gone, and `--resume` puts the newest complete one in its place
(mhss_ray.tune.resume_repair.repair_checkpoints)."""

from pathlib import Path

import pytest

from mhss_ray.train.checkpoint import CHECKPOINT_FILE


@pytest.mark.slow
def test_resume_repairs_a_latest_checkpoint_that_is_gone(killed_study, tmp_path):
    """A copy of the killed study (the state right after its kill) whose trials' latest checkpoints
    are deleted, as Tune's num_to_keep would between registering a newer one and saving its state."""
    import shutil

    from ray.tune import ExperimentAnalysis

    from mhss_ray.tune.resume_repair import repair_checkpoints

    study = tmp_path / "resume"
    shutil.copytree(killed_study[3] / "resume", study)
    named = {t.trial_id: t.checkpoint.path for t in ExperimentAnalysis(str(study)).trials if t.checkpoint}
    assert named
    for k, path in enumerate(named.values()):
        if k == 0:
            (Path(path) / CHECKPOINT_FILE).unlink()  # emptied, its folder left (a local delete under way)
        else:
            shutil.rmtree(path)  # gone (a bucket has no empty folders)
        newer = Path(path).with_name("checkpoint_999999")  # a newer complete one, registered after the saved state
        newer.mkdir()
        (newer / CHECKPOINT_FILE).write_bytes(b"newer")
    lines = repair_checkpoints(str(study), ExperimentAnalysis(str(study)).trials)
    assert len(lines) == len(named) and all("resumes from a copy of checkpoint_999999" in line for line in lines)
    for path in named.values():
        assert (Path(path) / CHECKPOINT_FILE).read_bytes() == b"newer"
    assert repair_checkpoints(str(study), ExperimentAnalysis(str(study)).trials) == []  # nothing left to repair


@pytest.mark.slow
def test_resume_restores_result_rows_the_state_knows_but_result_json_lacks(killed_study, tmp_path):
    """A copy of the killed study whose result.json files end before the epoch their state (and latest
    checkpoint) is at, as a kill between Tune uploading the state and the result.json leaves a bucket;
    one file also ends in a row cut short. Each gets back exactly the missing rows, as Tune recorded them."""
    import json
    import shutil

    from ray.tune import ExperimentAnalysis

    from mhss_ray.analysis.load import load_study
    from mhss_ray.tune.resume_repair import recover_result_rows

    study = tmp_path / "resume"
    shutil.copytree(killed_study[3] / "resume", study)
    trials = ExperimentAnalysis(str(study)).trials
    expected = {}
    for k, trial in enumerate(trials):
        at = trial.run_metadata.last_result["training_iteration"]
        assert at >= 2  # the killed study ran at least two epochs
        file = Path(trial.storage.trial_fs_path) / "result.json"
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        expected[trial.trial_id] = {r["training_iteration"]: r["val_mAP"] for r in rows if r["training_iteration"] <= at}
        kept = [line for line in file.read_text().splitlines() if json.loads(line)["training_iteration"] < at]
        cut = file.read_text().splitlines()[len(kept)][:40] if k == 0 else None  # a row the kill cut short
        file.write_text("".join(line + "\n" for line in kept) + (cut or ""))

    lines = recover_result_rows(str(study), trials)
    assert len(lines) == len(trials) and all("missing from its result.json; its row is restored" in line for line in lines)
    for trial in trials:
        rows = [json.loads(line) for line in (Path(trial.storage.trial_fs_path) / "result.json").read_text().splitlines()
                if line.strip().endswith("}")]  # fmt: skip
        assert {r["training_iteration"]: r["val_mAP"] for r in rows} == expected[trial.trial_id]
        assert [r["training_iteration"] for r in rows] == sorted(expected[trial.trial_id])  # in order, none twice
    assert recover_result_rows(str(study), trials) == []  # nothing left to restore
    epochs = load_study(str(study)).epochs  # the analysis reads them all, the row cut short skipped
    recorded = {t: sorted(g["epoch"]) for t, g in epochs.groupby("trial_id")}
    assert recorded == {t: sorted(e) for t, e in expected.items()}  # epoch k = iteration k here
