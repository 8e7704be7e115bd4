"""Compact prediction histories for SELFIE-style refurbishment (METHODS.md section 5).

Each network keeps, for every (sample, class), its last q binary predictions as the bits of one
uint8 (q <= 8: 1 byte per entry) or one int16 (8 < q <= 16: 2 bytes), never float tensors of N x C x q.
q up to 16 matters: with q <= 8 the uncertainty takes at most 5 values, so most of theta's range is
one decision. Every sample is seen exactly once per
epoch (the trainer's batches cover the whole training set), so the history is full from epoch q - 1
on, once the current prediction is recorded; no per-sample counter is needed.
"""

from __future__ import annotations

import math

import torch

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.uint8)


MAX_Q = 16


class PredictionHistory:
    def __init__(self, num_samples: int, num_classes: int, q: int, device: torch.device | str = "cpu"):
        if not 1 <= q <= MAX_Q:
            raise ValueError(f"q must be in [1, {MAX_Q}]")
        self.q = q
        self.mask = (1 << q) - 1
        self.dtype = torch.uint8 if q <= 8 else torch.int16  # int16 holds 16 bits; read back with & 0xFFFF
        self.bits = torch.zeros(num_samples, num_classes, dtype=self.dtype, device=device)
        self.popcount = _POPCOUNT.to(device)

    def _read(self, indices: torch.Tensor) -> torch.Tensor:
        return self.bits[indices].to(torch.int32) & 0xFFFF

    def record(self, indices: torch.Tensor, predictions: torch.Tensor) -> None:
        """Push the batch's binary predictions (B x C, bool or 0/1) into the ring."""
        shifted = ((self._read(indices) << 1) | predictions.to(torch.int32)) & self.mask
        if self.dtype == torch.int16:
            shifted = torch.where(shifted >= 1 << 15, shifted - (1 << 16), shifted)  # the same 16 bits as a signed value
        self.bits[indices] = shifted.to(self.dtype)

    def positive_fraction(self, indices: torch.Tensor) -> torch.Tensor:
        bits = self._read(indices).long()
        count = self.popcount[bits & 0xFF] + self.popcount[bits >> 8]
        return count.float() / self.q

    def uncertainty(self, indices: torch.Tensor) -> torch.Tensor:
        """u = H(m) / log 2, m the fraction of positive predictions (binary entropy in bits)."""
        return binary_entropy_bits(self.positive_fraction(indices))

    def majority(self, indices: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """The majority prediction; on an exact tie (m = 0.5, even q) the current label (METHODS.md section 5)."""
        m = self.positive_fraction(indices)
        return torch.where(m == 0.5, current.to(torch.uint8), (m > 0.5).to(torch.uint8))

    def state_dict(self) -> dict:
        return {"bits": self.bits.cpu(), "q": self.q}

    def load_state_dict(self, state: dict) -> None:
        if state["q"] != self.q or state["bits"].shape != self.bits.shape:
            raise ValueError("history state does not match this run (q or data size differ)")
        self.bits.copy_(state["bits"])


def binary_entropy_bits(m: torch.Tensor) -> torch.Tensor:
    m = m.clamp(0.0, 1.0)
    h = -(torch.xlogy(m, m) + torch.xlogy(1 - m, 1 - m))
    return h / math.log(2)
