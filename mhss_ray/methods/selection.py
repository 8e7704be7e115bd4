"""Forget-rate schedule and small-loss selection at label level (METHODS.md sections 2 and 3)."""

from __future__ import annotations

import math

import torch


def forget_rates(eps: torch.Tensor, alpha: float, epoch: int, t_k: int) -> torch.Tensor:
    """tau_c(e) = alpha * eps_c * min(1, e / T_k) (section 2), clipped to [0, 1]. `eps` is a C vector;
    pass the global eps repeated for the global forget rate, the eps_c for CDNR."""
    ramp = 1.0 if t_k <= 0 else min(1.0, epoch / t_k)
    return (alpha * eps * ramp).clamp(0.0, 1.0)


def _keep_smallest_per_column(losses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mask of the keep[c] smallest entries of every column c (stable order on ties)."""
    order = torch.argsort(losses, dim=0, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(0, order, torch.arange(losses.shape[0], device=losses.device).unsqueeze(1).expand_as(order))
    return ranks < keep.unsqueeze(0)


def kept_count(n: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Entries kept of n with forget rate tau, exactly (section 3, revision 2): tau rounded to 6
    decimals, kept = n - floor(tau * n + 1e-9) in float64. A float32 tau, or ceil((1 - tau) * n),
    keeps one entry too many in a few percent of cases (tau 0.35 of 20 entries must keep 13)."""
    tau64 = torch.round(tau.double() * 1e6) / 1e6
    n64 = n.double()
    return (n64 - torch.floor(tau64 * n64 + 1e-9)).long()


def small_loss_mask(
    losses: torch.Tensor, tau: torch.Tensor, granularity: str = "per_class", labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Entries (image, class) a network deems clean: the smallest losses (section 3).

    per_class: in each column c keep the ceil((1 - tau_c) * B) smallest losses.
    per_class_polarity: the same separately among the observed positives and observed negatives of c
    (tau may be 2 x C, the rates of the observed negatives and positives: `polarity_rates: split`).
    global: rank all B x C entries together and keep ceil((1 - mean tau) * B * C).
    """
    b, c = losses.shape
    losses = losses.detach().float()
    if granularity == "per_class":
        return _keep_smallest_per_column(losses, kept_count(torch.full((c,), b, device=losses.device), tau))
    if granularity == "per_class_polarity":
        assert labels is not None, "per_class_polarity needs the observed labels"
        mask = torch.zeros_like(losses, dtype=torch.bool)
        for polarity in (0, 1):
            members = labels == polarity
            masked = torch.where(members, losses, torch.full_like(losses, math.inf))
            keep = kept_count(members.sum(0), tau[polarity] if tau.dim() == 2 else tau)  # 2 x C: per-polarity rates
            mask |= _keep_smallest_per_column(masked, keep) & members
        return mask
    if granularity == "global":
        flat = losses.reshape(-1, 1)
        keep = kept_count(torch.tensor([b * c], device=losses.device), tau.float().mean().reshape(1))
        return _keep_smallest_per_column(flat, keep).reshape(b, c)
    raise ValueError(f"unknown granularity {granularity!r}")


class RejectsSmallLoss:
    """What a small-loss method (with `tau()` and `cfg.granularity`) tells mhss-audit: the entries every
    network's small-loss trick rejects at the current forget rates. Inherit it before Method."""

    def suspected(self, losses: list[torch.Tensor], observed: torch.Tensor) -> torch.Tensor:
        tau = self.tau()
        kept = [small_loss_mask(loss, tau, self.cfg.granularity, observed) for loss in losses]
        return ~torch.stack(kept).any(0)
