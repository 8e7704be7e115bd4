"""Baselines (METHODS.md section 8): `asl`, one network on every observed label, and `asl-clean`,
the same on the clean labels (the upper bound, synthetic noise only)."""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import Method, MethodInputs, Selection


class FixedLabels(Method):
    """Every network learns from every entry of fixed labels. With num_networks=2 it is the cost
    floor of a dual-network method (used by the benchmarks)."""

    def __init__(self, observed, clean, loss_fn, use_clean: bool = False, num_networks: int = 1):
        super().__init__(observed, clean, loss_fn)
        self.labels = clean if use_clean else observed
        self.num_networks = num_networks

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        return [Selection(self.labels[indices])] * self.num_networks

    def current_labels(self) -> list[torch.Tensor]:
        return [self.labels]

    def suspected(self, losses, observed):
        return torch.ones_like(observed, dtype=torch.bool)  # no selection: every entry the networks disagree with


@register_method("asl", summary="one network on every observed label (section 8)")
def build_asl(inputs: MethodInputs) -> FixedLabels:
    return FixedLabels(inputs.observed, inputs.clean, inputs.loss_fn)


@register_method(
    "asl-clean", needs_clean=True, summary="one network on the clean labels: the upper bound, synthetic noise only (section 8)"
)
def build_asl_clean(inputs: MethodInputs) -> FixedLabels:
    return FixedLabels(inputs.observed, inputs.clean, inputs.loss_fn, use_clean=True)
