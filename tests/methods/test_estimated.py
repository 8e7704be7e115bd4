"""Noise rates estimated from the networks' predictions (method.noise_rate_source: estimated)."""

import numpy as np
import pytest
import torch

from mhss_ray.config import MethodConfig
from mhss_ray.methods.estimated import EstimatedRates
from mhss_ray.noise import confident_rates, entry_rates, likelihood_rates, mixture_rates, wrong_entries


def noisy_column(n=4000, prior=0.3, wrong_pos=0.2, wrong_neg=0.1, seed=0):
    """Clean labels, observed labels with the given wrong shares among the observed positives and negatives,
    and probabilities of a network that learnt the clean labels well (not the noise)."""
    rng = np.random.default_rng(seed)
    clean = (rng.random(n) < prior).astype(np.uint8)
    observed = clean.copy()
    pos, neg = np.flatnonzero(clean == 1), np.flatnonzero(clean == 0)
    # choose flips so that the observed polarities end with the wanted wrong shares
    k_add = int(round(wrong_pos * len(pos) / (1 - wrong_pos)))  # negatives reported positive
    k_omit = int(round(wrong_neg * len(neg) / (1 - wrong_neg)))  # positives reported negative
    observed[rng.choice(neg, k_add, replace=False)] = 1
    observed[rng.choice(pos, k_omit, replace=False)] = 0
    probs = np.clip(np.where(clean == 1, rng.beta(8, 2, n), rng.beta(2, 8, n)), 1e-4, 1 - 1e-4)
    as_t = lambda a: torch.from_numpy(a).reshape(-1, 1)  # noqa: E731
    return as_t(observed), as_t(clean), as_t(probs.astype(np.float32))


# the likelihood reads p as the calibrated clean posterior, which these Beta draws are not: tested below
@pytest.mark.parametrize("estimate", [confident_rates, mixture_rates], ids=["confident", "mixture"])
def test_estimators_recover_the_wrong_shares_from_a_network_that_learnt_the_clean_labels(estimate):
    observed, clean, probs = noisy_column()
    wrong, _ = wrong_entries(observed, clean)
    pos = observed.bool()
    truth = torch.stack([(wrong & ~pos).sum(0) / (~pos).sum(0), (wrong & pos).sum(0) / pos.sum(0)]).float()
    rates = estimate(observed, probs)
    assert rates.shape == (2, 1)
    assert torch.allclose(rates, truth, atol=0.05), (rates, truth)
    eps_c = entry_rates(observed, rates)
    assert abs(float(eps_c) - float(wrong.float().mean())) < 0.03


def calibrated_column(separation: float, n=20000, prior=0.3, flip_neg=0.05, flip_pos=0.15, seed=0):
    """A network whose probability is the exact clean posterior of a feature drawn from two unit Gaussians
    `separation` apart (1: a network that has not learnt the images, many near 0.5; 4: one that has); the
    observed labels flip class-conditionally (clean 0 -> 1 with flip_neg, 1 -> 0 with flip_pos)."""
    rng = np.random.default_rng(seed)
    clean = (rng.random(n) < prior).astype(np.uint8)
    s = rng.normal(np.where(clean == 1, separation / 2, -separation / 2), 1.0)
    odds = prior / (1 - prior) * np.exp(separation * s)  # the Gaussians' likelihood ratio times the prior odds
    probs = odds / (1 + odds)
    flip = rng.random(n) < np.where(clean == 1, flip_pos, flip_neg)
    observed = np.where(flip, 1 - clean, clean).astype(np.uint8)
    as_t = lambda a: torch.from_numpy(a).reshape(-1, 1)  # noqa: E731
    return as_t(observed), as_t(clean), as_t(probs.astype(np.float32))


@pytest.mark.parametrize("separation", [1.0, 4.0], ids=["unsure", "sure"])
def test_the_likelihood_recovers_the_noise_from_a_calibrated_network_sure_or_not(separation):
    """Why likelihood is the default (docs/methods.md): a network still unsure of many images makes a
    confident-joint count call its own doubt label noise, where the likelihood explains it by the doubt."""
    observed, clean, probs = calibrated_column(separation)
    wrong, _ = wrong_entries(observed, clean)
    truth = float(wrong.float().mean())
    by_likelihood = float(entry_rates(observed, likelihood_rates(observed, probs)))
    by_count = float(entry_rates(observed, confident_rates(observed, probs)))
    assert abs(by_likelihood - truth) < 0.02, (by_likelihood, truth)
    if separation == 1.0:
        assert by_count > truth + 0.1, (by_count, truth)  # the count's error this default avoids


@pytest.mark.parametrize("scale", [0.02, 0.07, 3.0], ids=["timid-T0.02", "timid-T0.07", "sure-T3"])
def test_the_temperature_is_found_far_outside_its_old_range(scale):
    """A network whose logits are the calibrated ones times `scale` (its temperature): T is fitted on a log
    grid over [0.01, 100] and then locally (the bounded search on [0.1, 4] put T 0.07's rates 5x off)."""
    observed, clean, probs = calibrated_column(2.0)
    logit = torch.logit(probs.double().clamp(1e-7, 1 - 1e-7))
    squeezed = torch.sigmoid(logit * scale).float()  # as timid (or as sure) as a network at T = scale
    wrong, _ = wrong_entries(observed, clean)
    truth = float(wrong.float().mean())
    estimate = float(entry_rates(observed, likelihood_rates(observed, squeezed)))
    assert abs(estimate - truth) < 0.02, (estimate, truth)


def test_a_rate_at_the_cap_is_reported_as_the_cap():
    from mhss_ray.noise import at_cap

    observed, _, probs = noisy_column(wrong_pos=0.0, wrong_neg=0.0)
    both = torch.cat([observed, 1 - observed], 1)  # the second column: every label wrong, estimated at the cap
    polarity = likelihood_rates(both, torch.cat([probs, probs], 1))
    assert at_cap(polarity).tolist() == [False, True]


def test_no_noise_estimates_little_and_never_above_half():
    observed, clean, probs = noisy_column(wrong_pos=0.0, wrong_neg=0.0)
    for estimate in (likelihood_rates, confident_rates):
        assert float(estimate(observed, probs).max()) < 0.03
        flipped = 1 - observed  # every label wrong: the estimate stops at the cap
        assert float(estimate(flipped, probs).max()) <= 0.5


def test_estimates_refresh_until_the_selection_starts_then_stay():
    observed = torch.tensor([[1], [0], [1], [0]], dtype=torch.uint8)
    in_sample = MethodConfig(name="mhss", noise_rate_source="estimated", noise_rate_holdout=0.0)
    est = EstimatedRates(in_sample, observed, last_refresh=1)
    assert est.metrics() == {}  # nothing before the first epoch ends
    est.record(torch.arange(4), [torch.tensor([[3.0], [-3.0], [3.0], [-3.0]])] * 2)
    assert est.refresh(0) and est.refresh(1) and not est.refresh(2)
    assert est.metrics()["noise_rate_hat"] == [0.0]
    every = EstimatedRates(MethodConfig(name="mhss", noise_rate_source="estimated", noise_rate_refresh="every_epoch"), observed, 1)
    assert every.refresh(5)


def test_each_network_leaves_out_its_own_fold_while_estimating_and_records_only_there():
    n = 1000
    observed = (torch.rand(n, 3, generator=torch.Generator().manual_seed(0)) < 0.3).to(torch.uint8)
    est = EstimatedRates(MethodConfig(name="mhss", noise_rate_source="estimated", noise_rate_holdout=0.2), observed, last_refresh=2, seed=5)
    assert [int((est.fold == k).sum()) for k in (0, 1)] == [200, 200]  # disjoint folds, 20% each
    rows = torch.arange(n)
    est.begin_epoch(0)
    zs = [torch.full((n, 3), 2.0), torch.full((n, 3), -2.0)]  # network 0 says 1 everywhere, network 1 says 0
    est.record(rows, zs)
    assert torch.equal(est.learns(0, rows)[:, 0], est.fold != 0) and torch.equal(est.learns(1, rows)[:, 0], est.fold != 1)
    p = est.probs.float()[:, 0]
    assert (p[est.fold == 0] > 0.8).all() and (p[est.fold == 1] < 0.2).all() and (p[est.fold == -1] == 0).all()
    est.begin_epoch(3)  # past the last refresh: the folds rejoin the training
    assert est.learns(0, rows) is None
    other = EstimatedRates(MethodConfig(name="mhss", noise_rate_source="estimated"), observed, last_refresh=2, seed=6)
    assert not torch.equal(other.fold, est.fold)  # the folds follow the run seed


def test_mhss_train_with_estimated_rates_records_them_every_epoch_and_keeps_them_after_the_warm_up(tiny_yaml, tmp_path):
    import json

    from mhss_ray.cli import train_main

    sets = ["method.name=mhss", "method.noise_rate_source=estimated", "method.q=2", "method.warmup=2", "data.n_train=96"]
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(tiny_yaml), "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))])
    assert exit_.value.code == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    names = [str(c) for c in range(10)]
    hats = [[m[f"noise_rate_hat_{c}"] for c in names] for m in history]
    assert len(hats) == 3 and hats[0] != hats[1] and hats[1] == hats[2]  # refreshed after epochs 1 and 2 (the warm-up), then kept
    assert all(0.0 <= h <= 0.5 for row in hats for h in row)
    assert all(f"noise_rate_{c}" in history[0] for c in names)  # the realised rates beside them
