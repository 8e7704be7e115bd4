"""A table of binary labels kept 8 to a byte (rows packed along the classes): the corrected labels
of CoSELFIE and MHSS cost 1/8 byte per (sample, class, network)."""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_rows(labels: torch.Tensor) -> torch.Tensor:
    """B x C of 0/1 -> B x ceil(C / 8) uint8."""
    b, c = labels.shape
    width = (c + 7) // 8
    padded = torch.zeros(b, width * 8, dtype=torch.uint8, device=labels.device)
    padded[:, :c] = labels.to(torch.uint8)
    return (padded.view(b, width, 8) << _SHIFTS.to(labels.device)).sum(-1, dtype=torch.uint8)


def unpack_rows(packed: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B x ceil(C / 8) uint8 -> B x C uint8 of 0/1."""
    bits = (packed.unsqueeze(-1) >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(packed.shape[0], -1)[:, :num_classes]


class LabelTable:
    def __init__(self, labels: torch.Tensor):
        self.num_classes = labels.shape[1]
        self.packed = pack_rows(labels)

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        return unpack_rows(self.packed[indices], self.num_classes)

    def set(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        self.packed[indices] = pack_rows(labels)

    def all(self) -> torch.Tensor:
        return unpack_rows(self.packed, self.num_classes)

    @property
    def nbytes(self) -> int:
        return self.packed.numel()
