"""The notes a trial's checkpoint folder carries for a resume (mhss_ray.tune.checkpoint_notes)."""

import json

import pyarrow.fs

from mhss_ray.tune.checkpoint_notes import (
    RESTORED_AS_FILE,
    read_reported,
    restored_as,
    rows_to_report_again,
    write_reported,
    write_restored_as,
)


def test_a_checkpoint_put_in_place_reports_the_epochs_the_state_lacks(tmp_path):
    rows = [{"epoch": e, "val_mAP": 10.0 + e} for e in range(1, 6)]
    write_reported(str(tmp_path), rows)
    assert read_reported(str(tmp_path)) == rows
    assert rows_to_report_again(str(tmp_path), 5) == []  # an ordinary checkpoint: nothing again
    write_restored_as(pyarrow.fs.LocalFileSystem(), str(tmp_path), 3)
    assert restored_as(str(tmp_path)) == 3
    assert rows_to_report_again(str(tmp_path), 5) == rows[3:]  # epochs 4 and 5, in order
    assert rows_to_report_again(str(tmp_path), 4) == rows[3:4]  # never past the checkpoint's own epoch


def test_missing_or_damaged_notes_read_as_none(tmp_path):
    assert read_reported(str(tmp_path)) == [] and restored_as(str(tmp_path)) is None  # a checkpoint from before the notes
    (tmp_path / "reported.json").write_text('[{"epoch": 1')  # cut short
    (tmp_path / RESTORED_AS_FILE).write_text(json.dumps({"epoch": "3"}))
    assert read_reported(str(tmp_path)) == [] and restored_as(str(tmp_path)) is None
    assert rows_to_report_again(str(tmp_path), 3) == []


def test_a_ray_train_pointer_put_in_place_counts_from_the_epoch_the_state_knows(tmp_path):
    """A Ray Train trial reports again, from Train's run state, every epoch after the one this returns."""
    from mhss_ray.tune.driver import epoch_tune_knows
    from mhss_ray.tune.forward import POINTER_FILE

    (tmp_path / POINTER_FILE).write_text(json.dumps({"train_run": "train-x", "train_checkpoint": "c", "epoch": 4}))
    assert epoch_tune_knows(str(tmp_path)) == 4
    write_restored_as(pyarrow.fs.LocalFileSystem(), str(tmp_path), 3)  # the copy of epoch 4's pointer, where epoch 3's was
    assert epoch_tune_knows(str(tmp_path)) == 3
