"""`method.restarts` (SELFIE's restart, METHODS.md section 5): rounds of the epochs; each later round
re-initialises the networks and the optimiser, clears the histories and keeps the corrected labels."""

import math
import shutil

import pytest
import torch

from mhss_ray.config import default_warmup
from mhss_ray.rounds import Round, RoundSchedule
from mhss_ray.errors import UserError
from mhss_ray.train.checkpoint import load_checkpoint
from mhss_ray.train.loop import Trainer

from ..conftest import tiny_config

# 6 epochs in 2 rounds of 3: warm-up 1 and q 1, so each round selects and corrects for 2 epochs
RESTART = {
    "method": {"name": "mhss", "q": 1, "warmup": 1, "t_k": 1, "theta": 0.5, "restarts": 1},
    "noise": {"mode": "complex"},
    "schedule": {"epochs": 6},
}


class Keep:
    """Report function: every metrics dict, the networks' first weights and the method's state after each epoch."""

    def __init__(self, trainer, folder):
        self.trainer, self.folder, self.metrics, self.weights, self.states = trainer, folder, [], [], []

    def __call__(self, metrics, checkpoint_dir):
        self.metrics.append(metrics)
        self.weights.append([next(iter(n.parameters())).detach().clone() for n in self.trainer.networks.nets])
        self.states.append(self.trainer.method.state_dict())
        shutil.copytree(checkpoint_dir, self.folder / f"epoch-{metrics['epoch']}")


def test_round_arithmetic_and_refusals():
    assert RoundSchedule.of(tiny_config(**RESTART)).starts == [0, 3]
    assert RoundSchedule.of(tiny_config(method={"name": "mhss", "restarts": 2}, schedule={"epochs": 30})).starts == [0, 10, 20]
    by_epoch = RoundSchedule(7, 2).by_epoch()  # rounds of 7 // 3 = 2 epochs, the last takes the remainder
    assert [(r.index, r.first, r.epochs) for r in by_epoch] == [(0, 0, 2)] * 2 + [(1, 2, 2)] * 2 + [(2, 4, 3)] * 3
    assert RoundSchedule(5).by_epoch() == [Round(0, 0, 5)] * 5 and RoundSchedule(30, 1).length == 15
    assert default_warmup(5, 15) == 7  # the default warm-up is that of a round: 30 epochs, 1 restart
    with pytest.raises(UserError, match="method.restarts: 1 with method coteaching: only coselfie and mhss"):
        tiny_config(method={"name": "coteaching", "restarts": 1})
    with pytest.raises(UserError, match=r"method.warmup: 3 warm-up epochs in rounds of 3 \(schedule.epochs 6, method.restarts 1\)"):
        tiny_config(**{**RESTART, "method": {**RESTART["method"], "warmup": 3}})
    with pytest.raises(UserError, match="method.restarts: 10 warm-up epochs in rounds of 10"):  # the default warm-up of q 5 in 10 epochs
        tiny_config(method={"name": "mhss", "restarts": 2, "q": 9}, schedule={"epochs": 30})


def test_a_restart_renews_networks_optimiser_and_histories_keeps_the_corrections_and_resumes(tmp_path):
    cfg = tiny_config(**RESTART)
    trainer = Trainer(cfg)
    start = [next(iter(n.parameters())).detach().clone() for n in trainer.networks.nets]
    keep = Keep(trainer, tmp_path / "full")
    trainer.run(keep, log=lambda _: None)
    m = keep.metrics
    assert [x["epoch"] for x in m] == [1, 2, 3, 4, 5, 6] and [x["round"] for x in m] == [0, 0, 0, 1, 1, 1]
    assert m[3]["lr"] == pytest.approx(m[0]["lr"])  # the schedule starts again
    # round 1 starts from freshly drawn weights, not round 0's and not the first draw
    fresh = Trainer(cfg).networks.fresh(0, 1)
    assert not torch.equal(keep.weights[3][0], keep.weights[2][0]) and not torch.equal(next(iter(fresh.parameters())), start[0])
    # round 0's corrections are the labels round 1 starts from, and its warm-up epoch corrects nothing
    changed_0 = m[2]["labels_changed"]
    assert changed_0 > 0, "round 0 corrected nothing: the test would not see what a restart keeps"
    assert m[3]["corrections"] == 0 and m[3]["labels_changed"] == changed_0
    labels = [y.clone() for y in trainer.method.current_labels()]
    trainer.method.restart()  # what the trainer calls at a round's start: histories emptied, labels kept
    assert all(int(h.bits.abs().sum()) == 0 for h in trainer.method.histories)
    assert all(torch.equal(a, b) for a, b in zip(labels, trainer.method.current_labels()))

    # ... and a run resumed inside round 1 (its own optimiser and schedule) continues like this one
    resumed = Trainer(cfg)
    resumed.load_state_dict(load_checkpoint(tmp_path / "full" / "epoch-5"))
    again = Keep(resumed, tmp_path / "again")
    resumed.run(again, log=lambda _: None)
    assert [x["epoch"] for x in again.metrics] == [6]
    for key in ("train_loss", "test_mAP", "lr", "labels_changed", "residual_noise"):
        assert math.isclose(again.metrics[0][key], m[5][key], rel_tol=1e-6, abs_tol=1e-9), key
