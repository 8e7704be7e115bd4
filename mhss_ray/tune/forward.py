"""Hands every epoch of a Ray Train run to its Tune trial, with a pointer checkpoint.

Ray's `TuneReportCallback` forwards only metrics, so Tune sees a trial without checkpoints: after a
driver crash `Tuner.restore` restarts such a trial from scratch and rewrites its result file, and the
epochs reported before the crash are lost from the study (measured: a trial killed after epoch 3
kept only epochs 4-6). This callback forwards the first worker's metrics and the path of the
checkpoint Train just persisted; the trial driver reports them to Tune with a tiny checkpoint that
points at it, so Tune restores the trial (and its history) while Train resumes from its own
checkpoint. Nothing is copied twice.

Train persists an epoch before Tune hears of it, so a crash can leave persisted epochs unreported
(measured: up to two). A restarted trial first reports the epochs of the checkpoints that Train's
own run state registered after the one Tune restored the trial from (`unreported_epochs`); Train
then resumes after the newest of them. A checkpoint folder the crash left unregistered is not
reported: Train trains that epoch again.
"""

from __future__ import annotations

import json

from ray.train.v2.api.callback import UserCallback

POINTER_FILE = "train_checkpoint.json"
TRAIN_STATE_FILE = "checkpoint_manager_snapshot.json"  # Ray Train 2.60's record of the run's checkpoints and their metrics


class ForwardToTrial(UserCallback):
    def __init__(self, queue):
        self.queue = queue  # a ray.util.queue.Queue the trial driver reads

    def after_report(self, run_context, metrics, checkpoint):
        self.queue.put({"metrics": dict(metrics[0]), "checkpoint_path": checkpoint.path if checkpoint else None})


def unreported_epochs(run_path: str, after_epoch: int) -> list[dict]:
    """The checkpoints registered in the Train run's state whose epoch is past `after_epoch`, oldest
    first, as forwarded items ({"metrics", "checkpoint_path"}); [] when the run has no state yet."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(run_path)
    try:
        with fs.open_input_stream(f"{inner}/{TRAIN_STATE_FILE}") as f:
            registered = json.loads(f.readall().decode())["checkpoint_results"]
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return []  # a run that never registered a checkpoint (or whose state Ray lays out otherwise)
    items = [
        {"metrics": r["metrics"], "checkpoint_path": f"{run_path.rstrip('/')}/{r['checkpoint_dir_name']}"}
        for r in registered
        if (r.get("metrics") or {}).get("epoch", 0) > after_epoch
    ]
    return sorted(items, key=lambda item: item["metrics"]["epoch"])
