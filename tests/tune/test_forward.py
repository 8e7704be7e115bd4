"""The epochs a restarted Ray Train trial reports first, from a Train run's state (the real format is
checked against a real run in test_train_workers.py; here, the edge cases)."""

import json

from mhss_ray.tune.forward import TRAIN_STATE_FILE, unreported_epochs


def test_only_registered_checkpoints_past_the_restored_epoch_come_back_oldest_first(tmp_path):
    run = tmp_path / "train-abc_00000"
    run.mkdir()
    registered = [{"checkpoint_dir_name": f"checkpoint_{e}", "metrics": {"epoch": e, "val_mAP": 30.0 + e}} for e in (4, 3, 2)]
    (run / TRAIN_STATE_FILE).write_text(json.dumps({"ray_version": "2.60.0", "checkpoint_results": registered}))
    (run / "checkpoint_5").mkdir()  # persisted, never registered: Train trains epoch 5 again, nothing to report
    items = unreported_epochs(str(run), after_epoch=2)
    assert [i["metrics"]["epoch"] for i in items] == [3, 4]
    assert items[0]["metrics"]["val_mAP"] == 33.0 and items[1]["checkpoint_path"] == f"{run}/checkpoint_4"


def test_a_run_without_state_has_nothing_to_report(tmp_path):
    assert unreported_epochs(str(tmp_path / "train-none"), after_epoch=0) == []
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / TRAIN_STATE_FILE).write_text("{not json")
    assert unreported_epochs(str(tmp_path / "odd"), after_epoch=0) == []
