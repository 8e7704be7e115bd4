"""The base of the forgetting methods (Co-teaching, CoSELFIE, MHSS; METHODS.md sections 2-4): two networks, each
forgetting the largest-loss share tau = alpha * eps of every column, ramped in over t_k epochs.

It owns the noise rates (given, the oracle's, verified or estimated from the networks: methods/estimated.py)
and the forget rates they make; a subclass adds its own state (`prepare`), says until when an estimate
refreshes (`estimate_until`), what the rates multiply (`forget_base`: MHSS's class-dependent rates) and
how it selects (`_select`)."""

from __future__ import annotations

import torch

from ..config import MethodConfig
from .base import Method, MethodInputs
from .estimated import EstimatedRates, RateEstimation
from .selection import RejectsSmallLoss, forget_rates


class ForgettingMethod(RejectsSmallLoss, RateEstimation, Method):
    num_networks = 2

    def __init__(
        self, cfg: MethodConfig, observed, clean, loss_fn, eps_c: torch.Tensor, eps: float, epochs: int = 30, eps_pm=None, seed: int = 0
    ):
        super().__init__(observed, clean, loss_fn)
        self.cfg = cfg
        self.split = eps_pm is not None  # per-polarity rates (polarity_rates: split)
        self.prepare(epochs)
        self.set_rates(eps_c, eps, eps_pm)
        self.estimated = (
            EstimatedRates(cfg, observed, self.estimate_until(), seed, shift=loss_fn.positive_logit())
            if cfg.noise_rate_source == "estimated"
            else None
        )

    @classmethod
    def from_inputs(cls, inputs: MethodInputs) -> "ForgettingMethod":
        """The registry's builder: the method from what build_method gives every method."""
        i = inputs
        return cls(i.cfg.method, i.observed, i.clean, i.loss_fn, i.eps_c, i.eps, i.epochs, i.eps_pm, i.cfg.seed)

    def prepare(self, epochs: int) -> None:
        """The method's own state, made before its rates are set (`epochs`: of a round of method.restarts)."""

    def estimate_until(self) -> int:
        """The last epoch (0-based) whose end refreshes an estimate: the ramp reaches full forgetting at t_k."""
        return max(self.cfg.t_k - 1, 0)

    def set_rates(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> None:
        self.eps = self.forget_base(eps_c, eps, eps_pm if self.split else None)

    def forget_base(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> torch.Tensor:
        """The eps the forget rates multiply by alpha (section 2): the global eps for every class; per
        polarity (eps_pm, 2 x C: observed negatives, positives; revision 2) the classes' mean of each row."""
        if eps_pm is not None:
            return eps_pm.mean(1, keepdim=True).expand_as(eps_pm).clone()
        return torch.full_like(eps_c, eps)

    def tau(self) -> torch.Tensor:
        return forget_rates(self.eps, self.cfg.alpha, self.epoch, self.cfg.t_k)
