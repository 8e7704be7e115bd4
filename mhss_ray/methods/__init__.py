"""Noisy-label methods behind one interface (base.Method), built by name from the run config."""

from __future__ import annotations

import torch

from ..config import RunConfig
from .base import Method, Selection
from .baseline import FixedLabels
from .losses import AsymmetricLoss, masked_batch_loss


def build_method(cfg: RunConfig, observed: torch.Tensor, clean: torch.Tensor) -> Method:
    """observed/clean: the N x C training labels (uint8) on the training device."""
    name = cfg.method.name
    if name == "asl":
        return FixedLabels(observed)
    if name == "asl-clean":
        return FixedLabels(clean)
    raise ValueError(f"unknown method {name!r}")  # the config validation rules this out


__all__ = ["AsymmetricLoss", "Method", "Selection", "build_method", "masked_batch_loss"]
