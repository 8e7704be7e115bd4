"""A resume after a driver was killed between Tune deleting a checkpoint (num_to_keep) and saving its
state: the checkpoint the state names is gone, and `--resume` puts the newest complete one in its place
(mhss_ray.tune.study.repair_checkpoints)."""

from pathlib import Path

import pytest

from mhss_ray.train.checkpoint import CHECKPOINT_FILE


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
    for k, path in enumerate(named.values()):
        if k == 0:
            (Path(path) / CHECKPOINT_FILE).unlink()  # emptied, its folder left (a local delete under way)
        else:
            shutil.rmtree(path)  # gone (a bucket has no empty folders)
        newer = Path(path).with_name("checkpoint_999999")  # a newer complete one, registered after the saved state
        newer.mkdir()
        (newer / CHECKPOINT_FILE).write_bytes(b"newer")
    lines = repair_checkpoints(str(study))
    assert len(lines) == len(named) and all("resumes from a copy of checkpoint_999999" in line for line in lines)
    for path in named.values():
        assert (Path(path) / CHECKPOINT_FILE).read_bytes() == b"newer"
    assert repair_checkpoints(str(study)) == []  # nothing left to repair
