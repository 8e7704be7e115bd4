"""Noisy-label methods behind one interface (base.Method). Each method module registers its builder
and its capabilities (registry.register_method); `build_method` builds the one the run config names.
A new method is one module here and one line in the import list below."""

from __future__ import annotations

import torch

from ..config import RunConfig, forgets_per_class
from ..errors import UserError
from ..noise import UNKNOWN, noise_rates, polarity_rates, sampled_rates
from ..registry import METHODS
from ..rounds import RoundSchedule
from . import baseline, coteaching, coselfie, mhss, disc  # noqa: F401  (each registers itself; this order is the listed order)
from .base import Batch, Method, MethodInputs, Selection
from .losses import AsymmetricLoss, masked_batch_loss


def build_method(cfg: RunConfig, observed: torch.Tensor, clean: torch.Tensor, measured: dict | None = None) -> Method:
    """observed/clean: the N x C training labels (uint8) on the training device; measured: the rates of
    noise.verified's random sample (verdicts.Verdicts.sample_rates), for noise_rate_source verified."""
    spec = METHODS.get(cfg.method.name)
    if spec.needs_clean and bool((clean == UNKNOWN).any()):
        raise UserError(f"method.name: {spec.name} trains on the clean labels, which noise.mode real does not have")
    inputs = MethodInputs(cfg, observed, clean, AsymmetricLoss.from_config(cfg.loss), epochs=RoundSchedule.of(cfg).length)
    split = cfg.method.polarity_rates == "split" and cfg.method.granularity == "per_class_polarity"
    per_class = forgets_per_class(cfg)  # the rates it forgets with are the ones checked
    if spec.forgets and cfg.method.noise_rate_source == "verified":
        inputs.eps_c, inputs.eps, eps_pm = sampled_rates(cfg.method, measured, observed.device, per_class)
        inputs.eps_pm = eps_pm if split else None
    elif spec.forgets:
        inputs.eps_c, inputs.eps = noise_rates(cfg.method, observed, clean, per_class)
        if split:
            inputs.eps_pm = polarity_rates(cfg.method, observed, clean, inputs.eps_c, per_class)
    method = spec.build(inputs)
    method.registered_name = spec.name  # named in its error lines (base.check_selections)
    return method


__all__ = ["AsymmetricLoss", "Batch", "Method", "MethodInputs", "Selection", "build_method", "masked_batch_loss"]
