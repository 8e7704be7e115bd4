"""METHODS.md revision 2, pinned on hand-built tensors: the loss-consistent history threshold p*,
refurbishment of rejected entries only, the warm-up default, exact kept counts, 2-byte histories,
JCC corrections counted once, exact BCE for confident negatives, DISC's shift."""

import math

import pytest
import torch

from mhss_ray.config import MethodConfig
from mhss_ray.methods import AsymmetricLoss
from mhss_ray.methods.coselfie import CoSELFIE, PredictedLabel, default_warmup
from mhss_ray.methods.disc import DISC
from mhss_ray.methods.history import PredictionHistory
from mhss_ray.methods.mhss import MHSS
from mhss_ray.methods.selection import kept_count, small_loss_mask

ASL = AsymmetricLoss()
BCE = AsymmetricLoss(0.0, 0.0, 0.0)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_p_star_is_half_for_bce_and_0_7496_for_asl_defaults():
    assert BCE.positive_threshold() == pytest.approx(0.5, abs=1e-9)
    p = ASL.positive_threshold()
    assert p == pytest.approx(0.7496, abs=1e-4)
    # at p* both labels cost the same; just below it label 0 is cheaper, just above label 1
    assert ASL.entry_loss(p, 1) == pytest.approx(ASL.entry_loss(p, 0), rel=1e-9)
    assert ASL.entry_loss(p - 0.01, 0) < ASL.entry_loss(p - 0.01, 1) and ASL.entry_loss(p + 0.01, 1) < ASL.entry_loss(p + 0.01, 0)


def test_with_asl_a_probability_between_one_half_and_p_star_is_recorded_as_0():
    observed = torch.zeros(4, 1, dtype=torch.uint8)
    rule = PredictedLabel("loss", ASL, observed)
    z = torch.tensor([[logit(0.55)], [logit(0.7)], [logit(0.76)], [logit(0.95)]])
    assert rule(z).flatten().tolist() == [False, False, True, True]
    assert PredictedLabel("loss", BCE, observed)(z).flatten().tolist() == [True, True, True, True]
    assert PredictedLabel(0.9, ASL, observed)(z).flatten().tolist() == [False, False, False, True]
    # rank: the top round(pi_c * B) logits of each column, pi_c the observed positive share
    shares = torch.tensor([[1, 0], [0, 0], [0, 1], [1, 1]], dtype=torch.uint8)  # pi = 0.5, 0.5
    ranked = PredictedLabel("rank", ASL, shares)(torch.tensor([[0.1, 3.0], [0.4, 2.0], [0.3, 1.0], [0.2, 0.0]]))
    assert ranked.tolist() == [[False, True], [True, True], [True, False], [False, False]]


def test_an_entry_the_small_loss_trick_keeps_is_never_changed_by_its_own_network():
    # one class, four entries; network 1 is certain every label is wrong (predicts the opposite)
    observed = torch.tensor([[0], [1], [0], [1]], dtype=torch.uint8)
    clean = 1 - observed
    cfg = MethodConfig(name="coselfie", q=1, theta=0.0, warmup=0, alpha=1.0, t_k=0, granularity="per_class")
    m = CoSELFIE(cfg, observed, clean, ASL, torch.tensor([0.5]), 0.5)
    m.begin_epoch(0)
    z_opposite = (1 - observed.float()) * 10 - 5
    # make entry 0's loss the smallest for network 1 (kept), the others larger
    z1 = z_opposite.clone()
    z1[0, 0] = -0.5  # predicts 0 = its observed label: small loss, kept by S_1, and p < p*: history says 0
    s = m.select(torch.arange(4), [z1, z_opposite])
    kept = small_loss_mask(ASL(z1, observed), m.tau(), "per_class", observed)
    assert kept[0, 0] and kept.sum() == 2
    table = m.tables[0].all()
    assert table[kept].tolist() == observed[kept].tolist()  # what S_1 kept keeps its label
    assert (table[~kept] == clean[~kept]).all()  # rejected and certain: refurbished to the prediction
    assert s is not None


def test_warm_up_default_is_tied_to_q_and_the_epochs():
    assert default_warmup(5, 30) == 10  # max(5 + 3, 10)
    assert default_warmup(15, 100) == 34  # max(15 + 10, 34)
    assert default_warmup(10, 30) == 13
    cfg = MethodConfig(name="mhss", q=5)
    m = MHSS(cfg, torch.zeros(4, 2, dtype=torch.uint8), torch.zeros(4, 2, dtype=torch.uint8), ASL, torch.zeros(2), 0.0, epochs=30)
    assert m.warmup == 10


@pytest.mark.parametrize(
    "n, tau, kept", [(20, 0.35, 13), (10, 0.2, 8), (7, 0.0, 7), (7, 1.0, 0), (3, 0.3333333, 3), (3, 0.34, 2), (64, 0.1, 58)]
)
def test_kept_counts_are_exact(n, tau, kept):
    assert int(kept_count(torch.tensor([n]), torch.tensor([tau], dtype=torch.float32))) == kept


def test_float32_tau_everywhere_keeps_exact_counts():
    for n in range(1, 101):
        for t in range(0, 101):
            tau = t / 100
            want = n - math.floor(round(tau, 6) * n + 1e-9)
            assert int(kept_count(torch.tensor([n]), torch.tensor([tau], dtype=torch.float32))) == want, (n, tau)


@pytest.mark.parametrize("q", [9, 12, 16])
def test_histories_above_8_take_2_bytes_and_count_right(q):
    h = PredictionHistory(5, 3, q)
    assert h.bits.element_size() == 2
    seq = torch.randint(0, 2, (40, 5, 3))
    for step in seq:
        h.record(torch.arange(5), step)
    assert torch.allclose(h.positive_fraction(torch.arange(5)), seq[-q:].float().mean(0))
    assert PredictionHistory(5, 3, 8).bits.element_size() == 1


def test_jcc_counts_a_correction_once():
    observed = torch.tensor([[0], [1], [1], [0]], dtype=torch.uint8)
    clean = torch.tensor([[1], [1], [0], [0]], dtype=torch.uint8)
    cfg = MethodConfig(name="mhss", q=1, theta=0.0, warmup=0, alpha=1.0, t_k=0, granularity="per_class", jcc=True)
    m = MHSS(cfg, observed, clean, ASL, torch.tensor([0.5]), 0.5)
    m.begin_epoch(0)
    z = clean.float() * 10 - 5  # both networks certain of the clean labels
    m.select(torch.arange(4), [z, z.clone()])
    assert int(m.stats.changed) == 2 and int(m.stats.changed_correct) == 2  # two entries, applied by both networks


def test_bce_is_exact_for_confident_negatives():
    z = torch.tensor([[15.0], [16.6], [20.0], [40.0]])
    loss = BCE(z, torch.zeros(4, 1)).flatten()
    assert torch.allclose(loss, z.flatten(), atol=1e-3)  # -log(1 - sigmoid(z)) ~ z for large z
    clipped = ASL(torch.tensor([[3.0]]), torch.zeros(1, 1))
    p = 1 / (1 + math.exp(-3.0))
    assert float(clipped) == pytest.approx((p - 0.05) ** 4 * -math.log(1 - (p - 0.05)), rel=1e-5)


def test_disc_shift_moves_the_undecided_point_to_p_star():
    observed = torch.zeros(2, 1, dtype=torch.uint8)
    shifted = DISC(MethodConfig(name="disc"), observed, observed, ASL)
    plain = DISC(MethodConfig(name="disc", disc_shift=False), observed, observed, ASL)
    assert shifted.shift == pytest.approx(logit(ASL.positive_threshold())) and plain.shift == 0.0
    assert DISC(MethodConfig(name="disc"), observed, observed, BCE).shift == pytest.approx(0.0, abs=1e-9)


def test_correction_budget_caps_each_column_at_alpha_eps_n_most_certain_first():
    observed = torch.zeros(8, 1, dtype=torch.uint8)
    clean = torch.ones(8, 1, dtype=torch.uint8)
    cfg = MethodConfig(name="coselfie", q=1, theta=1.0, warmup=0, alpha=1.0, t_k=0, granularity="per_class", correction_budget=True)
    m = CoSELFIE(cfg, observed, clean, ASL, torch.tensor([0.25]), 0.25)  # budget ceil(0.25 * 8) = 2
    m.begin_epoch(0)
    z = torch.full((8, 1), 5.0)  # certain positives everywhere: the 2 rejected entries are refurbished
    m.select(torch.arange(8), [z, z.clone()])
    assert int((m.tables[0].all() != observed).sum()) == 2
    m.begin_epoch(1)
    m.select(torch.arange(8), [z, z.clone()])
    assert int((m.tables[0].all() != observed).sum()) == 2  # the budget holds over steps
    unlimited = CoSELFIE(
        MethodConfig(name="coselfie", q=1, theta=1.0, warmup=0, alpha=1.0, t_k=0, granularity="per_class"),
        observed,
        clean,
        ASL,
        torch.tensor([0.25]),
        0.25,
    )
    for e in range(2):
        unlimited.begin_epoch(e)
        unlimited.select(torch.arange(8), [z, z.clone()])
    assert int((unlimited.tables[0].all() != observed).sum()) > 2


def test_per_polarity_rates_from_the_oracle_and_from_given_with_omega():
    from mhss_ray.config import RunConfig, from_dict
    from mhss_ray.noise import polarity_rates

    clean = torch.tensor([[1], [1], [0], [0], [0], [0], [0], [0], [0], [0]], dtype=torch.uint8)
    observed = torch.tensor([[0], [1], [1], [0], [0], [0], [0], [0], [0], [0]], dtype=torch.uint8)  # one omission, one addition
    oracle = from_dict(RunConfig, {"method": {"name": "mhss", "polarity_rates": "split"}})
    rates = polarity_rates(oracle.method, observed, clean, torch.tensor([0.2]))
    assert rates[:, 0].tolist() == pytest.approx([1 / 8, 1 / 2])  # wrong observed negatives 1 of 8, positives 1 of 2
    given = from_dict(
        RunConfig,
        {"method": {"name": "mhss", "polarity_rates": "split", "noise_rate_source": "given", "noise_rates": [0.2], "omission_share": 0.75}},
    )
    rates = polarity_rates(given.method, observed, clean, torch.tensor([0.2]))  # 2 wrong entries: 1.5 among negatives, 0.5 among positives
    assert rates[:, 0].tolist() == pytest.approx([1.5 / 8, 0.5 / 2])


def test_split_rates_forget_each_polarity_by_its_own_rate():
    losses = torch.arange(20, dtype=torch.float32).reshape(20, 1)
    labels = torch.tensor([[1]] * 10 + [[0]] * 10, dtype=torch.uint8)
    tau = torch.tensor([[0.1], [0.4]])  # negatives forget 10%, positives 40%
    mask = small_loss_mask(losses, tau, "per_class_polarity", labels)
    assert int(mask[labels.bool()].sum()) == 6 and int(mask[~labels.bool()].sum()) == 9
