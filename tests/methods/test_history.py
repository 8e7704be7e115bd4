import math

import torch

from mhss_ray.methods.history import PredictionHistory, binary_entropy_bits


def test_ring_keeps_the_last_q_predictions():
    h = PredictionHistory(num_samples=3, num_classes=2, q=3)
    idx = torch.tensor([1])
    for pred in ([1, 0], [0, 0], [1, 0], [1, 1]):  # the first push falls out of a ring of 3
        h.record(idx, torch.tensor([pred]))
    assert torch.allclose(h.positive_fraction(idx), torch.tensor([[2 / 3, 1 / 3]]))
    assert h.majority(idx, torch.tensor([[0, 1]])).tolist() == [[1, 0]]  # no tie: the current label plays no part
    h2 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(2)
    assert torch.allclose(h.uncertainty(idx), torch.tensor([[h2, h2]]))
    assert h.positive_fraction(torch.tensor([0])).sum() == 0  # untouched rows


def test_entropy_is_zero_when_unanimous_and_one_when_split():
    assert torch.allclose(binary_entropy_bits(torch.tensor([0.0, 1.0, 0.5])), torch.tensor([0.0, 0.0, 1.0]))


def test_history_is_one_byte_per_entry_and_round_trips():
    h = PredictionHistory(100, 17, q=8)
    assert h.bits.dtype == torch.uint8 and h.bits.numel() == 100 * 17
    idx = torch.arange(100)
    for _ in range(9):
        h.record(idx, torch.rand(100, 17) > 0.5)
    other = PredictionHistory(100, 17, q=8)
    other.load_state_dict(h.state_dict())
    assert torch.equal(other.bits, h.bits)
