"""Noisy-label methods behind one interface (base.Method), built by name from the run config."""

from __future__ import annotations

import torch

from ..config import RunConfig, check_forget_rates, round_length
from ..data.noise import UNKNOWN
from ..errors import UserError
from .base import Batch, Method, Selection
from .baseline import FixedLabels
from .coselfie import CoSELFIE
from .coteaching import CoTeaching
from .disc import DISC
from .losses import AsymmetricLoss, masked_batch_loss
from .mhss import MHSS


def noise_rates(cfg: RunConfig, observed: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(eps_c, global eps) the forget rates use (METHODS.md section 2): `oracle` reads the realised
    rates of the injected noise; `given` takes method.noise_rates / method.noise_rate."""
    m = cfg.method
    c = observed.shape[1]
    if m.noise_rate_source == "oracle":
        known = clean != UNKNOWN
        if not known.any():
            raise UserError(
                "method.noise_rate_source: oracle measures the noise against clean labels, which noise.mode real does not have; "
                "give method.noise_rates or method.noise_rate (or a noise.clean_subset to measure them on)"
            )
        eps_c = ((observed != clean) & known).sum(0).float() / known.sum(0).clamp(min=1)
    else:
        if m.noise_rates is not None and len(m.noise_rates) != c:
            raise UserError(f"method.noise_rates: expected {c} values (one per class), got {len(m.noise_rates)}")
        given = m.noise_rates if m.noise_rates is not None else [m.noise_rate] * c
        eps_c = torch.tensor(given, dtype=torch.float32, device=observed.device)
    eps = m.noise_rate if m.noise_rate is not None else float(eps_c.mean())
    check_forget_rates(m.alpha, [float(x) for x in eps_c], m.noise_rate, f"{m.noise_rate_source} eps_c")  # the oracle's rates are known only now
    return eps_c, eps


def polarity_rates(cfg: RunConfig, observed: torch.Tensor, clean: torch.Tensor, eps_c: torch.Tensor) -> torch.Tensor:
    """2 x C: the share of the observed negatives (row 0) and of the observed positives (row 1) of
    each class that are wrong (METHODS.md section 2, revision 2). `oracle` counts them; `given` puts
    omission_share of the eps_c * N wrong entries among the observed negatives, the rest among the positives."""
    m = cfg.method
    pos = observed.bool()
    n_pos, n_neg = pos.sum(0).double().clamp(min=1), (~pos).sum(0).double().clamp(min=1)
    if m.noise_rate_source == "oracle":
        known = clean != UNKNOWN
        wrong = (observed != clean) & known
        rates = torch.stack([(wrong & ~pos).sum(0) / n_neg, (wrong & pos).sum(0) / n_pos])
    else:
        wrong = eps_c.double() * observed.shape[0]
        rates = torch.stack([m.omission_share * wrong / n_neg, (1 - m.omission_share) * wrong / n_pos])
    rates = rates.clamp(0.0, 1.0).float()
    check_forget_rates(m.alpha, [float(x) for x in rates.flatten()], None, f"{m.noise_rate_source} per-polarity eps (negatives, then positives)")
    return rates


def build_method(cfg: RunConfig, observed: torch.Tensor, clean: torch.Tensor) -> Method:
    """observed/clean: the N x C training labels (uint8) on the training device."""
    name = cfg.method.name
    loss_fn = AsymmetricLoss.from_config(cfg.loss)
    if name == "asl-clean" and bool((clean == UNKNOWN).any()):
        raise UserError("method.name: asl-clean trains on the clean labels, which noise.mode real does not have")
    if name in ("asl", "asl-clean"):
        return FixedLabels(observed, clean, loss_fn, use_clean=name == "asl-clean")
    if name == "disc":
        return DISC(cfg.method, observed, clean, loss_fn)
    eps_c, eps = noise_rates(cfg, observed, clean)
    split = cfg.method.polarity_rates == "split" and cfg.method.granularity == "per_class_polarity"
    eps_pm = polarity_rates(cfg, observed, clean, eps_c) if split else None
    if name == "coteaching":
        return CoTeaching(cfg.method, observed, clean, loss_fn, eps_c, eps, eps_pm=eps_pm)
    if name == "coselfie":
        return CoSELFIE(cfg.method, observed, clean, loss_fn, eps_c, eps, epochs=round_length(cfg), eps_pm=eps_pm)
    if name == "mhss":
        return MHSS(cfg.method, observed, clean, loss_fn, eps_c, eps, epochs=round_length(cfg), eps_pm=eps_pm)
    raise ValueError(f"unknown method {name!r}")  # the config validation rules this out


__all__ = ["AsymmetricLoss", "Batch", "Method", "Selection", "build_method", "masked_batch_loss", "noise_rates", "polarity_rates"]
