"""Co-teaching-MLC (METHODS.md section 4): two networks, label-level small-loss selection with the
global forget rate, cross update (network 1 learns from the entries network 2 selected)."""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import Selection
from .forgetting import ForgettingMethod
from .selection import small_loss_mask


class CoTeaching(ForgettingMethod):
    """Every class forgets at the global rate (per polarity: the classes' mean of each row)."""

    def _select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        labels = self.observed[indices]
        tau = self.tau()
        masks = [small_loss_mask(self.loss_fn(z.detach(), labels), tau, self.cfg.granularity, labels) for z in logits]
        return [Selection(labels, masks[1]), Selection(labels, masks[0])]  # cross update


register_method(
    "coteaching", num_networks=2, forgets=True, estimates_rates=True,
    keys=(
        "alpha", "t_k", "noise_rate_source", "noise_rate_estimator", "noise_rate_refresh", "noise_rates", "noise_rate", "polarity_rates",
        "omission_share", "granularity", "noise_rate_holdout", "onset", "onset_patience",
    ),
    labels={"method.alpha": "α"},
    summary="two networks, label-level small-loss selection, cross update (section 4)",
)(CoTeaching.from_inputs)  # fmt: skip
