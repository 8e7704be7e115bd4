"""The interface between the trainer and a noisy-label method.

A method owns the training labels as it sees them and its per-sample state. For each batch it is
given the sample indices and each network's logits, and answers, per network, which entries (image,
class) that network learns from and with which labels. The trainer then applies the loss; it knows
nothing else about the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Selection:
    targets: torch.Tensor  # B x C labels this network learns with
    mask: torch.Tensor | None = None  # B x C, 1 where it learns from the entry; None = every entry


class Method:
    num_networks: int = 1

    def begin_epoch(self, epoch: int) -> None:
        """Called before the first batch of each epoch (0-based)."""

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after the last batch of each epoch; returns metrics to report."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
