"""What `--resume` mends after a driver was killed between two of Tune's writes
(mhss_ray.tune.resume_repair): a checkpoint the state names that Tune had deleted; result.json rows the
state knows but the file lacks."""

import re
from pathlib import Path

import pytest

from mhss_ray.train.checkpoint import CHECKPOINT_FILE


@pytest.mark.slow
def test_resume_repairs_a_latest_checkpoint_that_is_gone(killed_study, tmp_path):
    """A copy of the killed study (the state right after its kill, at epoch k) whose trials' latest
    checkpoints are deleted, as Tune's num_to_keep does when it registers the next one, epoch k + 1's,
    and the driver is killed before it saves its state or uploads that epoch's row to result.json
    (seen in the three-kill test: the trial went on from epoch k + 1 and that epoch's row was never
    written). `mhss-tune --resume` puts the newer checkpoint in place, and the trial reports epoch
    k + 1 again from the rows saved with it: every epoch once, in order."""
    import json
    import shutil
    import subprocess

    import torch
    from ray.tune import ExperimentAnalysis

    from mhss_ray.tune.checkpoint_notes import REPORTED_FILE

    study = tmp_path / "resume"
    shutil.copytree(killed_study[3] / "resume", study)
    trials = [t for t in ExperimentAnalysis(str(study)).trials if t.checkpoint]
    assert len(trials) == 2
    marker = {}
    for k, trial in enumerate(trials):
        named = Path(trial.checkpoint.path)
        at = trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics["epoch"]
        result = Path(trial.storage.trial_fs_path) / "result.json"
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        rows = [r for r in rows if r["epoch"] <= at]
        result.write_text("".join(json.dumps(r) + "\n" for r in rows))  # epoch k + 1's row never reached it
        # epoch k + 1's checkpoint, registered after the saved state: epoch k's, one epoch on, with the
        # rows the trial saves beside each checkpoint (its own row carries a value to recognise it by)
        newer = named.with_name("checkpoint_999999")
        newer.mkdir()
        state = torch.load(named / CHECKPOINT_FILE, weights_only=True)
        torch.save({**state, "epoch": at + 1}, newer / CHECKPOINT_FILE)
        marker[trial.trial_id] = 12.5 + k
        kept = [{key: v for key, v in r.items() if key in ("epoch", "val_mAP", "test_mAP", "train_loss")} for r in rows]
        (newer / REPORTED_FILE).write_text(json.dumps(kept + [{**kept[-1], "epoch": at + 1, "val_mAP": marker[trial.trial_id]}]))
        if k == 0:
            (named / CHECKPOINT_FILE).unlink()  # emptied, its folder left (a local delete under way)
        else:
            shutil.rmtree(named)  # gone (a bucket has no empty folders)

    _, cmd, env, _ = killed_study
    resumed = subprocess.run([*cmd[:-2], "--storage", str(tmp_path), "--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    out = resumed.stdout
    for trial in trials:
        at = trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics["epoch"]
        assert f"trial {trial.trial_id}: its checkpoint {Path(trial.checkpoint.path).name} was deleted" in out, out[-3000:]
        assert re.search(rf"\[{trial.trial_id}\] resuming after epoch {at + 1}\b", out), out[-3000:]
        assert f"[{trial.trial_id}] reporting epoch {at + 1} again" in out
        rows = [json.loads(line) for line in (Path(trial.storage.trial_fs_path) / "result.json").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]  # every epoch once, in order
        assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]  # Tune's count stays the epoch
        assert rows[at]["val_mAP"] == marker[trial.trial_id]  # epoch k + 1: the row saved with its checkpoint


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


@pytest.mark.slow
def test_resume_sets_aside_a_search_state_a_kill_left_empty(killed_study, tmp_path):
    """Tune copies its files into the study one by one, rewriting each in place; a driver killed during that
    copy left empty search-state files, and the next `--resume` printed Tune's traceback and ended with no
    trial (the three-kill test, under load). The empty file is set aside, the search resumes from the
    newest readable state, and the study finishes; with no readable state left, one line says so."""
    import shutil
    import subprocess

    from mhss_ray.errors import UserError
    from mhss_ray.tune.resume_repair import repair_search_state

    storage, cmd, env, snapshot = killed_study
    study = tmp_path / "runs" / "studies" / "resume"
    shutil.copytree(snapshot / "resume", study)
    readable = sorted(study.glob("basic-variant-state-*.json"))
    assert readable, "a random-search study saves its search state"
    empty = study / "basic-variant-state-2099-01-01_00-00-00.json"  # newer by name: the one Tune would load
    empty.write_bytes(b"")
    shutil.copy(snapshot.parent / "resume.yaml", tmp_path / "resume.yaml")
    resumed = subprocess.run(
        [cmd[0], "-c", cmd[2].replace(str(snapshot.parent), str(tmp_path)), *cmd[3:], "--resume"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"search resumes from {readable[-1].name}" in resumed.stdout
    assert not empty.exists() and (study / f"{empty.name}.unreadable").exists()  # set aside, not deleted
    assert "Failed to restore the run state" not in resumed.stderr
    epochs = [len((d / "result.json").read_text().splitlines()) for d in study.glob("trial_*")]
    assert len(epochs) == 2 and set(epochs) == {6}  # both trials finished: nothing started over

    for f in study.glob("basic-variant-state-*.json"):
        f.write_bytes(b"\x80")  # every state cut: nothing to resume the search from
    with pytest.raises(UserError, match="unreadable search state .* no older one to resume the search from"):
        repair_search_state(str(study))
