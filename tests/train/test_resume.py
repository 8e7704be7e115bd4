"""Checkpoint -> resume continues exactly as an uninterrupted run with the same seed."""

import math
import shutil

import pytest
import torch

from mhss_ray.train.checkpoint import load_checkpoint, save_checkpoint
from mhss_ray.errors import TrainingDiverged
from mhss_ray.methods import AsymmetricLoss, build_method
from mhss_ray.methods.baseline import FixedLabels
from mhss_ray.train.loop import Trainer, fit

from ..conftest import tiny_config


class Recorder:
    """A report function that keeps every metrics dict and a copy of the latest checkpoint."""

    def __init__(self, keep_dir):
        self.metrics, self.keep_dir = [], keep_dir

    def __call__(self, metrics, checkpoint_dir):
        self.metrics.append(metrics)
        shutil.rmtree(self.keep_dir, ignore_errors=True)
        shutil.copytree(checkpoint_dir, self.keep_dir)


KEYS = (
    "train_loss",
    "val_mAP",
    "test_mAP",
    "test_f1_micro",
    "lr",
    "selection_precision",
    "selection_recall",
    "corrections",
    "residual_noise",
)


def two_networks(cfg, observed, clean):
    return FixedLabels(observed, clean, AsymmetricLoss.from_config(cfg.loss), num_networks=2)


@pytest.mark.parametrize(
    "overrides, factory",
    [
        ({}, build_method),
        ({"model": {"ema": True, "ema_decay": 0.9}, "optim": {"scheduler": "cosine"}}, build_method),
        ({"optim": {"name": "adamw"}}, two_networks),
        ({"method": {"name": "mhss", "q": 2, "warmup": 2, "t_k": 1}, "noise": {"mode": "complex"}}, build_method),
        ({"method": {"name": "disc", "warmup": 1}}, build_method),
        (
            {"method": {"name": "coteaching", "noise_rate_source": "estimated", "noise_rate_refresh": "every_epoch", "t_k": 1}},
            build_method,
        ),
        (
            {"method": {"name": "mhss", "q": 1, "onset": "plateau", "onset_patience": 1, "noise_rate_source": "estimated"}},
            build_method,
        ),
    ],
    ids=["plain", "ema-cosine", "two-networks", "mhss", "disc", "coteaching-estimated", "mhss-plateau"],
)
def test_resume_gives_the_same_next_epoch_metrics(tmp_path, overrides, factory):
    cfg = tiny_config(**overrides)
    full = Recorder(tmp_path / "full")
    Trainer(cfg, method_factory=factory).run(full, log=lambda _: None)
    assert [m["epoch"] for m in full.metrics] == [1, 2, 3]

    # two epochs, as if the process then died; resume in a fresh trainer
    trainer = Trainer(cfg, method_factory=factory)
    first_two = []
    for epoch in range(2):
        first_two.append(trainer.train_one_epoch(epoch) | trainer.evaluator.evaluate())
        save_checkpoint(tmp_path / "first", trainer.state_dict(epoch))
    del trainer
    resumed = Recorder(tmp_path / "resumed")
    trainer = Trainer(cfg, method_factory=factory)
    trainer.load_state_dict(load_checkpoint(tmp_path / "first"))
    trainer.run(resumed, log=lambda _: None)
    assert [m["epoch"] for m in resumed.metrics] == [3]
    for key in [*KEYS, *(k for k in full.metrics[2] if k.startswith("noise_rate_hat_") or k in ("heldout_mAP", "onset"))]:
        assert math.isclose(resumed.metrics[0][key], full.metrics[2][key], rel_tol=1e-6, abs_tol=1e-9), key
    for key in ("train_loss", "test_mAP"):
        assert math.isclose(first_two[1][key], full.metrics[1][key], rel_tol=1e-6), key


def test_two_networks_start_from_different_weights():
    t = Trainer(tiny_config(), method_factory=two_networks)
    a, b = (next(iter(n.parameters())) for n in t.networks.nets)
    assert len(t.networks) == 2 and not torch.equal(a, b)


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    rec = Recorder(tmp_path / "ckpt")
    fit(tiny_config(schedule={"epochs": 1}), rec, log=lambda _: None)
    state = load_checkpoint(tmp_path / "ckpt")  # weights_only=True inside
    assert set(state) == {"epoch", "networks", "emas", "optimizer", "scheduler", "method", "rng", "config", "thresholds", "class_names"}
    assert state["epoch"] == 1 and isinstance(state["rng"]["torch"], torch.Tensor)


def test_asl_clean_learns_from_clean_labels():
    """With 40% naive noise, the clean-label baseline sees the clean targets, asl the noisy ones."""
    t = Trainer(tiny_config(noise={"rate": 0.4}, method={"name": "asl-clean"}))
    idx = torch.arange(32)
    assert torch.equal(t.method.select(idx, [None])[0].targets, t.clean[idx])
    noisy = build_method(tiny_config(noise={"rate": 0.4}), t.observed, t.clean)
    assert not torch.equal(noisy.select(idx, [None])[0].targets, t.clean[idx])


def test_non_finite_loss_stops_training_with_a_clear_error():
    t = Trainer(tiny_config())
    with torch.no_grad():
        t.networks.nets[0].fc.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="training loss became nan at epoch 1"):
        t.train_one_epoch(0)


def test_checkpoints_go_through_one_scratch_folder_that_a_killed_run_leaves_and_the_next_clears(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "left-by-a-killed-run.pt").write_bytes(b"x" * 1000)  # what a SIGKILL mid-report leaves
    seen = []

    def report(metrics, checkpoint_dir):
        seen.append((checkpoint_dir, sorted(p.name for p in scratch.iterdir())))

    Trainer(tiny_config(schedule={"epochs": 2})).run(report, log=lambda _: None, scratch=scratch)
    assert [d for d, _ in seen] == [str(scratch), str(scratch)]
    assert all("left-by-a-killed-run.pt" not in names and names for _, names in seen)  # emptied, then filled
    assert not scratch.exists()  # removed once the run ends


def test_a_checkpoint_of_another_run_is_refused_in_one_line():
    """Loading into the trainer (resume, mhss-audit) or into an evaluator (mhss-predict): another method or EMA
    setting, another model: one line each, never torch's traceback."""
    from mhss_ray.errors import UserError
    from mhss_ray.train.evaluator import Evaluator

    state = Trainer(tiny_config(method={"name": "asl"})).state_dict(0)
    with pytest.raises(UserError, match="written by a run with another method or EMA setting"):
        Trainer(tiny_config(method={"name": "coteaching", "noise_rate_source": "oracle"})).load_state_dict(state)
    other_model = tiny_config(method={"name": "asl"}, model={"name": "resnet10t"})
    with pytest.raises(UserError, match=r"checkpoint: does not fit this run's model, method or data \(Error"):
        Trainer(other_model).load_state_dict(state)
    with pytest.raises(UserError, match=r"checkpoint: does not fit this run's model or data \(Error"):
        Evaluator.of_checkpoint(other_model, state)
    assert Evaluator.of_checkpoint(tiny_config(method={"name": "asl"}), state).thresholds is None  # none chosen yet
