"""Restoring a trial whose checkpoint Tune deleted before its last state was saved (a driver killed in
between): the newest complete checkpoint beside it, or a fresh start (mhss_ray.tune.driver)."""

from pathlib import Path

import pytest
from ray.tune import Checkpoint

from mhss_ray.train.checkpoint import CHECKPOINT_FILE
from mhss_ray.tune.driver import complete_checkpoint


def test_a_deleted_checkpoint_falls_back_to_the_newest_complete_one(tmp_path):
    for name, complete in (
        ("checkpoint_000001", True),
        ("checkpoint_000002", False),
        ("checkpoint_000003", True),
        ("checkpoint_000004", False),
    ):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / CHECKPOINT_FILE).write_bytes(b"x")
    lines = []
    named = Checkpoint.from_directory(str(tmp_path / "checkpoint_000002"))  # emptied by Tune's num_to_keep
    chosen = complete_checkpoint(named, lines.append)
    assert chosen.path == str(tmp_path / "checkpoint_000003")
    assert lines == [
        "its checkpoint checkpoint_000002 is gone (deleted before the driver's last state was saved): restoring checkpoint_000003"
    ]
    intact = Checkpoint.from_directory(str(tmp_path / "checkpoint_000001"))
    assert complete_checkpoint(intact, lines.append) is intact and len(lines) == 1


def test_no_complete_checkpoint_left_starts_over(tmp_path):
    (tmp_path / "checkpoint_000000").mkdir()
    lines = []
    assert complete_checkpoint(Checkpoint.from_directory(str(tmp_path / "checkpoint_000000")), lines.append) is None
    assert "starting over at epoch 1" in lines[0]


@pytest.mark.slow
def test_resume_repairs_a_latest_checkpoint_that_is_gone(killed_study, tmp_path):
    """A copy of the killed study (the state right after its kill) whose trials' latest checkpoints
    are deleted, as Tune's num_to_keep would between registering a newer one and saving its state."""
    import shutil

    from ray.tune import ExperimentAnalysis

    from mhss_ray.tune.study import repair_checkpoints

    study = tmp_path / "resume"
    shutil.copytree(killed_study[3] / "resume", study)
    named = {t.trial_id: t.checkpoint.path for t in ExperimentAnalysis(str(study)).trials if t.checkpoint}
    assert named
    for path in named.values():
        shutil.rmtree(path)
        newer = Path(path).with_name("checkpoint_999999")  # a newer complete one, registered after the saved state
        newer.mkdir()
        (newer / CHECKPOINT_FILE).write_bytes(b"newer")
    lines = repair_checkpoints(str(study))
    assert len(lines) == len(named) and all("resumes from a copy of checkpoint_999999" in line for line in lines)
    for path in named.values():
        assert (Path(path) / CHECKPOINT_FILE).read_bytes() == b"newer"
    assert repair_checkpoints(str(study)) == []  # nothing left to repair
