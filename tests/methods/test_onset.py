"""method.onset: plateau, the forgetting methods start when the held-out folds' mAP stops rising."""

import pytest
import torch

from mhss_ray.config import MethodConfig
from mhss_ray.errors import UserError
from mhss_ray.methods import AsymmetricLoss
from mhss_ray.methods.coteaching import CoTeaching
from mhss_ray.methods.onset import PlateauOnset

from ..conftest import tiny_config


def test_the_onset_comes_after_patience_epochs_without_a_new_best():
    plateau = PlateauOnset(patience=2)
    assert [plateau.update(s) for s in (50.0, 60.0, 65.0, 64.0, 65.0)] == [False, False, False, False, True]  # a tie is no progress
    # a stall at the start, before the network has learnt anything, is a slow start, not memorisation
    slow = PlateauOnset(patience=2)
    assert [slow.update(s) for s in (26.0, 26.5, 27.9, 27.0, 40.0, 60.0, 59.0, 58.0)] == [False] * 7 + [True]
    again = PlateauOnset(patience=2)
    again.load_state_dict(plateau.state_dict())
    assert again.scores == plateau.scores


def coteaching(onset="plateau", source="oracle", n=400):
    g = torch.Generator().manual_seed(0)
    observed = (torch.rand(n, 3, generator=g) < 0.4).to(torch.uint8)
    cfg = MethodConfig(name="coteaching", onset=onset, onset_patience=1, noise_rate_source=source, t_k=10, alpha=1.0)
    eps_c = torch.full((3,), 0.2)
    return CoTeaching(cfg, observed, observed.clone(), AsymmetricLoss(), eps_c, 0.2, epochs=10, seed=0), observed


def run_epoch(method, observed, epoch, right: bool):
    """One epoch: no training batch matters here; each network's plain-view logits on its fold, right or wrong."""
    method.begin_epoch(epoch)
    rows = method.heldout_rows()
    for k, idx in enumerate(rows or []):
        y = observed[idx].float()
        method.take_heldout(k, idx, (y * 2 - 1) * (4.0 if right else -4.0))
    return method.end_epoch(epoch)


def test_coteaching_holds_out_a_fold_forgets_nothing_until_the_onset_then_forgets_at_full_rate():
    method, observed = coteaching()
    rows = torch.arange(len(observed))
    z = [torch.zeros(len(observed), 3)] * 2
    first = run_epoch(method, observed, 0, right=True)
    assert first["heldout_mAP"] == pytest.approx(100.0) and method.onset is None
    first_net, second_net = method.select(rows, z)
    assert (method.tau() == 0).all() and first_net.mask.all()  # nothing forgotten; the evaluated network learns every image
    assert second_net.mask.all(1).sum() == len(observed) - 80  # the second holds out its 20%
    second = run_epoch(method, observed, 1, right=False)  # worse than the best: patience 1 is spent
    assert second["onset"] == 2 and method.onset == 2
    method.begin_epoch(2)
    assert method.heldout_rows() is None and method.estimated.learns(0, rows) is None  # the folds rejoin
    assert torch.allclose(method.tau(), torch.full((3,), 0.2))  # full rate at once: no ramp after the onset
    assert "heldout_mAP" not in method.end_epoch(2)


def test_the_clock_keeps_the_ramp_from_the_first_epoch_and_holds_nothing_out_with_given_rates():
    method, observed = coteaching(onset="clock")
    assert method.onset == 0 and method.estimated is None and method.heldout_rows() is None
    method.begin_epoch(5)
    assert torch.allclose(method.tau(), torch.full((3,), 0.1))  # half-way up the t_k = 10 ramp


def test_the_onset_and_the_scores_survive_a_checkpoint():
    method, observed = coteaching(source="estimated")
    run_epoch(method, observed, 0, right=True)
    run_epoch(method, observed, 1, right=False)
    fresh, _ = coteaching(source="estimated")
    fresh.load_state_dict(method.state_dict())
    assert fresh.onset == 2 and fresh.plateau.scores == method.plateau.scores and fresh.estimated.last_refresh == 1
    assert torch.equal(fresh.estimated.polarity, method.estimated.polarity)  # the estimate made at the onset


@pytest.mark.parametrize(
    "method, message",
    [
        ({"noise_rate_holdout": 0.0}, "method.onset: plateau watches the images each network holds out"),
        ({"warmup": 3, "q": 2}, "method.warmup: a fixed warm-up and method.onset: plateau exclude each other"),
        ({"restarts": 1}, "method.onset: plateau with method.restarts 1"),
    ],
)
def test_settings_the_plateau_cannot_follow_are_one_line(method, message):
    with pytest.raises(UserError, match=message):
        tiny_config(method={"name": "mhss", "onset": "plateau", **method}, schedule={"epochs": 30})


def test_mhss_train_at_the_onset_reports_the_folds_score_until_then_and_says_when(tiny_yaml, tmp_path, capsys):
    import json

    from mhss_ray.cli import train_main

    sets = ["method.name=mhss", "method.onset=plateau", "method.onset_patience=1", "method.q=1", "noise.mode=complex", "schedule.epochs=5"]
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(tiny_yaml), "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))])
    assert exit_.value.code == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = [m["epoch"] for m in history if "heldout_mAP" in m]
    onsets = [m for m in history if "onset" in m]
    assert scored == list(range(1, len(scored) + 1)) and len(onsets) <= 1  # every epoch until the onset, then none
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("onset: ")]
    if onsets:
        assert scored[-1] == onsets[0]["epoch"] and onsets[0]["onset"] == onsets[0]["epoch"]
        assert said == [f"onset: the held-out images' mAP has not risen for 1 epoch; mhss selects from epoch {onsets[0]['epoch'] + 1} on"]
    else:
        assert scored == [1, 2, 3, 4, 5] and said == [
            "onset: none: the held-out images' mAP reached a new best within every 1 epochs to the last; mhss never forgot or "
            "corrected (it trained as its base loss on every label)"
        ]


def test_an_onset_that_cannot_be_told_falls_back_to_the_clock_and_one_that_never_comes_is_said():
    """A fold too small to judge: the paper's fixed epoch, said at the start; a rule that never fires: said at the end."""
    from mhss_ray.train.loop import Trainer

    said = []
    small = Trainer(tiny_config(data={"n_train": 64}, method={"name": "mhss", "q": 1, "onset": "plateau"}, schedule={"epochs": 6}))
    assert small.method.plateau is None and small.method.onset == small.method.clock_onset() == 2  # max(q + 1, 2) epochs
    small.run(lambda m, d: None, log=said.append)
    assert any(
        line.startswith("method.onset: plateau: the held-out fold holds 13 images (noise_rate_holdout 0.2 of 64; under 20): too few")
        and line.endswith("mhss forgets on the clock instead (from epoch 3, as method.onset: clock)")
        for line in said
    ), said
    said.clear()
    never = Trainer(tiny_config(method={"name": "coteaching", "onset": "plateau", "onset_patience": 5}, schedule={"epochs": 3}))
    never.run(lambda m, d: None, log=said.append)
    assert never.method.onset is None and not bool(never.method.tau().any())  # it never forgot
    assert said[-1].startswith("onset: none: the held-out images' mAP reached a new best within every 5 epochs to the last")
