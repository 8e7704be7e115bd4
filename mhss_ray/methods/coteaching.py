"""Co-teaching-MLC (METHODS.md section 4): two networks, label-level small-loss selection with the
global forget rate, cross update (network 1 learns from the entries network 2 selected)."""

from __future__ import annotations

import torch

from ..config import MethodConfig
from ..registry import register_method
from .base import Method, MethodInputs, Selection
from .estimated import EstimatedRates, RateEstimation
from .selection import RejectsSmallLoss, forget_rates, small_loss_mask


class CoTeaching(RejectsSmallLoss, RateEstimation, Method):
    num_networks = 2

    def __init__(
        self,
        cfg: MethodConfig,
        observed,
        clean,
        loss_fn,
        eps_c: torch.Tensor,
        eps: float,
        eps_pm: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__(observed, clean, loss_fn)
        self.cfg = cfg
        self.split = eps_pm is not None
        self.set_rates(eps_c, eps, eps_pm)
        # the ramp reaches full forgetting at epoch t_k: estimates refresh until then
        self.estimated = (
            EstimatedRates(cfg, observed, max(cfg.t_k - 1, 0), seed, shift=loss_fn.positive_logit())
            if cfg.noise_rate_source == "estimated"
            else None
        )

    def set_rates(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> None:
        """Section 2: tau = alpha * eps for every class; per polarity (2 x C) the classes' mean of each row."""
        if self.split:
            self.eps_global = eps_pm.mean(1, keepdim=True).expand_as(eps_pm).clone()
        else:
            self.eps_global = torch.full_like(eps_c, eps)

    def tau(self) -> torch.Tensor:
        return forget_rates(self.eps_global, self.cfg.alpha, self.epoch, self.cfg.t_k)

    def _select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        labels = self.observed[indices]
        tau = self.tau()
        masks = [small_loss_mask(self.loss_fn(z.detach(), labels), tau, self.cfg.granularity, labels) for z in logits]
        return [Selection(labels, masks[1]), Selection(labels, masks[0])]  # cross update


@register_method(
    "coteaching", num_networks=2, forgets=True, estimates_rates=True,
    keys=(
        "alpha", "t_k", "noise_rate_source", "noise_rate_estimator", "noise_rate_refresh", "noise_rates", "noise_rate", "polarity_rates",
        "omission_share", "granularity",
    ),
    labels={"method.alpha": "α"},
    summary="two networks, label-level small-loss selection, cross update (section 4)",
)  # fmt: skip
def build(inputs: MethodInputs) -> CoTeaching:
    return CoTeaching(
        inputs.cfg.method,
        inputs.observed,
        inputs.clean,
        inputs.loss_fn,
        inputs.eps_c,
        inputs.eps,
        eps_pm=inputs.eps_pm,
        seed=inputs.cfg.seed,
    )
