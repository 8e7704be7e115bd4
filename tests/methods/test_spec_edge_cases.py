"""Edge cases of METHODS.md revision 2 that an independent reference implementation found (each was
off by one entry, one flip or one refusal)."""

import numpy as np
import pytest
import torch

from mhss_ray.config import MethodConfig, check_forget_rates
from mhss_ray.errors import UserError
from mhss_ray.methods.history import PredictionHistory
from mhss_ray.methods.selection import small_loss_mask
from mhss_ray.noise import inject_naive, noise_rates


def test_an_exact_tie_in_the_history_keeps_the_current_label():
    h = PredictionHistory(num_samples=2, num_classes=2, q=4)
    idx = torch.tensor([0, 1])
    for pred in ([1, 0], [1, 1], [0, 0], [0, 1]):  # two of four positive in every column: m = 0.5
        h.record(idx, torch.tensor([pred, pred]))
    assert torch.equal(h.positive_fraction(idx), torch.full((2, 2), 0.5))
    current = torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8)
    assert torch.equal(h.majority(idx, current), current)  # theta 1 makes a tie refurbishable: it changes nothing
    h.record(idx, torch.tensor([[1, 1], [1, 1]]))  # now 3 of 4 in column 1, 2 of 4 in column 0
    assert h.majority(idx, current).tolist() == [[1, 1], [0, 1]]


def test_naive_noise_counts_with_the_specs_tolerance():
    clean = np.zeros((200, 1), dtype=np.uint8)
    clean[:90, 0] = 1  # 0.7 x 90 = 62.99999999999999 in float64
    out = inject_naive(clean, 0.7, np.random.default_rng(0))
    assert int(((out.labels == 0) & (clean == 1)).sum()) == 63 and int(((out.labels == 1) & (clean == 0)).sum()) == 63


@pytest.mark.parametrize("rate", [0.9999995, 0.9999999])
def test_a_forget_rate_that_rounds_to_one_is_refused(rate):
    with pytest.raises(UserError, match="a forget rate of 1"):
        check_forget_rates(1.0, [0.1, rate])
    # what it would have done: keep nothing of that column
    tau = torch.tensor([rate], dtype=torch.float32)
    assert not small_loss_mask(torch.rand(20, 1), tau).any()
    check_forget_rates(1.0, [0.1, 0.999999])  # 0.999999 keeps an entry of a million: allowed


def test_global_granularity_judges_the_mean_rate_it_uses():
    check_forget_rates(2.0, [0.6, 0.1, 0.1], granularity="global")  # alpha x eps_0 = 1.2, but the mean tau is 0.53
    with pytest.raises(UserError, match="per_class|noise_rates\\[0\\]"):
        check_forget_rates(2.0, [0.6, 0.1, 0.1], granularity="per_class")
    with pytest.raises(UserError, match="the mean of"):
        check_forget_rates(2.0, [0.6, 0.5, 0.5], granularity="global")
    # through the method's own noise-rate path, as a run reaches it
    m = MethodConfig(name="coteaching", alpha=2.0, noise_rate_source="given", noise_rates=[0.6, 0.1, 0.1], granularity="global")
    observed = torch.zeros(10, 3, dtype=torch.uint8)
    eps_c, _ = noise_rates(m, observed, observed)
    assert eps_c.tolist() == pytest.approx([0.6, 0.1, 0.1])


@pytest.mark.parametrize("granularity", ["per_class", "per_class_polarity"])
def test_the_run_check_judges_the_rates_the_method_forgets_with(granularity):
    """Co-teaching, CoSELFIE and MHSS without CDNR forget every class at one rate (the global eps): a large
    per-class rate is no forget rate of theirs (was: alpha 1.2 x noise_rates[0] 0.9 refused, tau 0.6)."""
    from mhss_ray.config import RunConfig, from_dict
    from mhss_ray.methods import build_method

    def run(name: str, **method):
        return from_dict(
            RunConfig,
            {
                "data": {"n_train": 64},
                "method": {"name": name, "alpha": 1.2, "noise_rate_source": "given", "noise_rates": [0.9, 0.1] + [0.1] * 8,
                           "granularity": granularity, **method},
            },
        )  # fmt: skip

    for name, method in (("coteaching", {}), ("coselfie", {}), ("mhss", {"cdnr": False})):
        cfg = run(name, **method)  # accepted
        observed = torch.zeros(40, 10, dtype=torch.uint8)
        observed[:20] = 1
        built = build_method(cfg, observed, observed)  # and built: it forgets every class at the mean, 0.18
        assert float(built.eps.max()) == pytest.approx(0.18), name
    with pytest.raises(UserError, match=r"noise_rates\[0\] 0.9 = 1.08"):  # CDNR forgets class 0 at 1.08
        run("mhss")
    with pytest.raises(UserError, match="the one rate this method forgets every class with"):
        run("coteaching", noise_rates=[0.9] * 10)
