"""Element-wise Asymmetric Loss (ASL), METHODS.md section 1."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import LossConfig


class AsymmetricLoss:
    """B x C per-entry ASL, no reduction; methods decide which entries count.

    positives: -(1 - p)^gamma_pos * log(p)
    negatives: -(p_m)^gamma_neg * log(1 - p_m), with p_m = max(p - clip, 0)
    The focusing weights carry no gradient (as in ASL's reference implementation).
    """

    eps = 1e-8

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05):
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip

    @classmethod
    def from_config(cls, cfg: LossConfig) -> "AsymmetricLoss":
        return cls(cfg.gamma_neg, cfg.gamma_pos, cfg.clip)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = logits.float()
        y = targets.float()
        p = torch.sigmoid(z)
        log_pos = F.logsigmoid(z)
        if self.clip > 0:
            # 1 - p_m = sigmoid(-z) + clip where p > clip, else 1: no 1 - p cancellation in float32
            p_m = (p - self.clip).clamp(min=0)
            log_neg = torch.where(p > self.clip, torch.log(torch.sigmoid(-z) + self.clip), torch.zeros_like(z))
        else:
            # log(1 - sigmoid(z)) in float32 is 14.84 instead of 15.00 at z = 15 and stops at 18.42
            p_m = p
            log_neg = F.logsigmoid(-z)
        with torch.no_grad():
            w_pos = (1 - p).pow(self.gamma_pos)
            w_neg = p_m.pow(self.gamma_neg)
        return -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg)

    def entry_loss(self, p: float, label: int) -> float:
        """The loss of one entry with probability p and label 0/1, in float64 (for p*)."""
        if label:
            return (1 - p) ** self.gamma_pos * -math.log(p)
        p_m = max(p - self.clip, 0.0)
        return p_m**self.gamma_neg * -math.log1p(-p_m) if p_m > 0 else 0.0

    def positive_threshold(self) -> float:
        """p*: above it label 1 has the smaller loss (METHODS.md section 5, revision 2): 0.5 for BCE,
        about 0.7496 for ASL's defaults. Found by bisection: the difference of the two losses falls
        from +inf at p = 0 to a negative value at p = 1."""
        lo, hi = 1e-12, 1 - 1e-12
        for _ in range(200):
            mid = (lo + hi) / 2
            if self.entry_loss(mid, 1) > self.entry_loss(mid, 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    def positive_logit(self) -> float:
        """logit(p*): the logit at which label 1 starts to have the smaller loss (0 for BCE)."""
        p = min(max(self.positive_threshold(), 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))


def masked_batch_loss(entry_losses: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum over the kept entries divided by the batch size B (METHODS.md section 1)."""
    kept = entry_losses if mask is None else entry_losses * mask
    return kept.sum() / entry_losses.shape[0]
