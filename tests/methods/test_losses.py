import math

import torch

from mhss_ray.methods.losses import AsymmetricLoss, masked_batch_loss


def _hand_asl(z: float, y: int, gamma_neg=4.0, gamma_pos=0.0, clip=0.05) -> float:
    p = 1 / (1 + math.exp(-z))
    if y == 1:
        return -((1 - p) ** gamma_pos) * math.log(p)
    p_m = max(p - clip, 0.0)
    return -(p_m**gamma_neg) * math.log(1 - p_m)


def test_asl_matches_hand_computed_values():
    z = torch.tensor([[0.0, 2.0, -1.5], [3.0, -4.0, 0.7]])
    y = torch.tensor([[1, 0, 1], [0, 1, 0]])
    got = AsymmetricLoss()(z, y)
    want = torch.tensor([[_hand_asl(float(z[i, j]), int(y[i, j])) for j in range(3)] for i in range(2)])
    assert torch.allclose(got, want, atol=1e-6)
    # one value written out: z = 0, y = 0 -> p_m = 0.45, loss = -(0.45^4) log(0.55)
    assert abs(float(AsymmetricLoss()(torch.zeros(1, 1), torch.zeros(1, 1))) - 0.0410063 * 0.5978370) < 1e-6


def test_asl_focusing_weights_carry_no_gradient():
    z = torch.tensor([[1.0]], requires_grad=True)
    AsymmetricLoss(gamma_neg=2.0, clip=0.0)(z, torch.zeros(1, 1)).sum().backward()
    p = torch.sigmoid(torch.tensor(1.0))
    # d/dz of -(w) log(1 - p) with w held constant = w * p
    assert torch.allclose(z.grad, (p**2 * p).reshape(1, 1), atol=1e-6)


def test_masked_batch_loss_divides_by_batch_size():
    losses = torch.arange(6.0).reshape(3, 2)
    mask = torch.tensor([[1, 0], [0, 1], [1, 1]])
    assert masked_batch_loss(losses, mask).item() == (0 + 3 + 4 + 5) / 3
    assert masked_batch_loss(losses, None).item() == 15 / 3
