import pytest
import torch

from mhss_ray.methods.selection import forget_rates, small_loss_mask


def test_tau_ramp():
    eps = torch.tensor([0.2, 0.4])
    assert torch.allclose(forget_rates(eps, 1.5, 0, 10), torch.zeros(2))
    assert torch.allclose(forget_rates(eps, 1.5, 5, 10), torch.tensor([0.15, 0.3]))
    assert torch.allclose(forget_rates(eps, 1.5, 10, 10), torch.tensor([0.3, 0.6]))
    assert torch.allclose(forget_rates(eps, 1.5, 25, 10), torch.tensor([0.3, 0.6]))
    assert torch.allclose(forget_rates(eps, 1.0, 0, 0), eps)  # T_k = 0: no ramp
    assert torch.allclose(forget_rates(torch.tensor([0.8]), 2.0, 10, 10), torch.tensor([1.0]))  # clipped


LOSSES = torch.tensor(
    [
        [0.9, 0.1],
        [0.2, 0.8],
        [0.5, 0.3],
        [0.1, 0.7],
    ]
)


def test_per_class_keeps_the_smallest_of_each_column():
    mask = small_loss_mask(LOSSES, torch.tensor([0.25, 0.5]), "per_class")
    # column 0 keeps ceil(0.75 * 4) = 3 smallest: rows 3, 1, 2; column 1 keeps 2: rows 0, 2
    assert mask.tolist() == [[False, True], [True, False], [True, True], [True, False]]


def test_per_class_count_is_not_fooled_by_float_rounding():
    losses = torch.arange(10.0).reshape(10, 1)
    assert small_loss_mask(losses, torch.tensor([0.2]), "per_class").sum() == 8  # (1 - 0.2) * 10 = 8.000000000000002


def test_per_class_polarity_ranks_positives_and_negatives_apart():
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]])
    mask = small_loss_mask(LOSSES, torch.tensor([0.5, 0.5]), "per_class_polarity", labels)
    # column 0: positives rows 0 (0.9), 1 (0.2) -> keep row 1; negatives rows 2 (0.5), 3 (0.1) -> keep row 3
    # column 1: positives rows 1 (0.8), 2 (0.3) -> keep row 2; negatives rows 0 (0.1), 3 (0.7) -> keep row 0
    assert mask.tolist() == [[False, True], [True, False], [False, True], [True, False]]


def test_global_ranks_all_entries_with_the_mean_tau():
    mask = small_loss_mask(LOSSES, torch.tensor([0.25, 0.5]), "global")
    # mean tau 0.375 -> keep ceil(0.625 * 8) = 5 smallest of 0.1, 0.1, 0.2, 0.3, 0.5 ...
    assert mask.tolist() == [[False, True], [True, False], [True, True], [True, False]]
    assert mask.sum() == 5


def test_polarity_needs_labels():
    with pytest.raises(AssertionError):
        small_loss_mask(LOSSES, torch.tensor([0.5, 0.5]), "per_class_polarity")
