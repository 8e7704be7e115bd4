"""Baselines (METHODS.md section 8): `asl`, one network on every observed label, and `asl-clean`,
the same on the clean labels (the upper bound, synthetic noise only)."""

from __future__ import annotations

import torch

from .base import Method, Selection


class FixedLabels(Method):
    """Every network learns from every entry of fixed labels. With num_networks=2 it is the cost
    floor of a dual-network method (used by the speed benchmark)."""

    def __init__(self, labels: torch.Tensor, num_networks: int = 1):
        self.labels = labels  # N x C uint8, on the training device
        self.num_networks = num_networks

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        return [Selection(self.labels[indices])] * self.num_networks
