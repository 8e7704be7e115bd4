"""Hands every epoch of a Ray Train run to its Tune trial, with a pointer checkpoint.

Ray's `TuneReportCallback` forwards only metrics, so Tune sees a trial without checkpoints: after a
driver crash `Tuner.restore` restarts such a trial from scratch and rewrites its result file, and the
epochs reported before the crash are lost from the study (measured: a trial killed after epoch 3
kept only epochs 4-6). This callback forwards the first worker's metrics and the path of the
checkpoint Train just persisted; the trial driver reports them to Tune with a tiny checkpoint that
points at it, so Tune restores the trial (and its history) while Train resumes from its own
checkpoint. Nothing is copied twice.
"""

from __future__ import annotations

from ray.train.v2.api.callback import UserCallback

POINTER_FILE = "train_checkpoint.json"


class ForwardToTrial(UserCallback):
    def __init__(self, queue):
        self.queue = queue  # a ray.util.queue.Queue the trial driver reads

    def after_report(self, run_context, metrics, checkpoint):
        self.queue.put({"metrics": dict(metrics[0]), "checkpoint_path": checkpoint.path if checkpoint else None})
