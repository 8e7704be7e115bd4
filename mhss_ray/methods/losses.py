"""Element-wise Asymmetric Loss (ASL), METHODS.md section 1."""

from __future__ import annotations

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
        p_m = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        log_pos = F.logsigmoid(z)
        log_neg = torch.log((1 - p_m).clamp(min=self.eps))
        with torch.no_grad():
            w_pos = (1 - p).pow(self.gamma_pos)
            w_neg = p_m.pow(self.gamma_neg)
        return -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg)


def masked_batch_loss(entry_losses: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum over the kept entries divided by the batch size B (METHODS.md section 1)."""
    kept = entry_losses if mask is None else entry_losses * mask
    return kept.sum() / entry_losses.shape[0]
