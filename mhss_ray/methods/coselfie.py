"""CoSELFIE-MLC (METHODS.md section 5): Co-teaching plus SELFIE's refurbishment, at label level.

Each network k keeps a history of its last q binary predictions per entry and its own table of
labels. After the warm-up, an entry whose full history has uncertainty u <= theta is refurbishable
(R_k) and takes network k's majority prediction as its label from then on (corrections persist).
Network k ranks its losses on its own labels to select S_k, and its peer learns from S_k | R_k
with network k's labels. MHSS (mhss.py) is this class with CDNR and JCC switched on.
"""

from __future__ import annotations

import torch

from ..config import MethodConfig
from .base import Method, Selection
from .history import PredictionHistory
from .labels import LabelTable
from .selection import forget_rates, small_loss_mask


class CoSELFIE(Method):
    num_networks = 2

    def __init__(self, cfg: MethodConfig, observed, clean, loss_fn, eps_c: torch.Tensor, eps: float, cdnr: bool = False, jcc: bool = False):
        super().__init__(observed, clean, loss_fn)
        self.cfg, self.cdnr, self.jcc = cfg, cdnr, jcc
        self.warmup = cfg.warmup if cfg.warmup is not None else cfg.q
        # section 2 / 6: tau_c = alpha * eps_c with CDNR, tau = alpha * eps otherwise
        self.eps = eps_c.clone() if cdnr else torch.full_like(eps_c, eps)
        n, c = observed.shape
        self.histories = [PredictionHistory(n, c, cfg.q, observed.device) for _ in range(2)]
        self.tables = [LabelTable(observed) for _ in range(2)]  # kept equal under JCC

    def tau(self) -> torch.Tensor:
        return forget_rates(self.eps, self.cfg.alpha, self.epoch, self.cfg.t_k)

    def refurbishable(self, k: int, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R_k, majority label) of network k for the batch; R_k is empty until the history is full."""
        history = self.histories[k]
        majority = history.majority(indices)
        if self.epoch + 1 < history.q:  # every sample is recorded once per epoch
            return torch.zeros_like(majority, dtype=torch.bool), majority
        return history.uncertainty(indices) <= self.cfg.theta, majority

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        for history, z in zip(self.histories, logits):
            history.record(indices, z.detach() > 0)  # p > 0.5
        old = [t.get(indices) for t in self.tables]
        if self.epoch < self.warmup:  # all entries, no selection, no correction
            return [Selection(old[0]), Selection(old[1])]

        (r0, m0), (r1, m1) = self.refurbishable(0, indices), self.refurbishable(1, indices)
        if self.jcc:  # section 6: R = R_1 | R_2, except where both deem it and their majorities disagree
            conflict = r0 & r1 & (m0 != m1)
            r = (r0 | r1) & ~conflict
            y = torch.where(r, torch.where(r0, m0, m1), old[0])
            refurb, labels = [r, r], [y, y]
        else:
            refurb = [r0, r1]
            labels = [torch.where(r0, m0, old[0]), torch.where(r1, m1, old[1])]
        for k in range(2):
            self.tables[k].set(indices, labels[k])
            self.stats.add_corrections(indices, old[k], labels[k])

        tau = self.tau()
        masks = [small_loss_mask(self.loss_fn(z.detach(), y), tau, self.cfg.granularity, y) for z, y in zip(logits, labels)]
        # network k's peer learns from S_k | R_k with network k's labels
        return [Selection(labels[1], masks[1] | refurb[1]), Selection(labels[0], masks[0] | refurb[0])]

    def current_labels(self) -> list[torch.Tensor]:
        return [t.all() for t in self.tables]

    def state_dict(self) -> dict:
        return {"histories": [h.state_dict() for h in self.histories], "tables": [t.packed.cpu() for t in self.tables]}

    def load_state_dict(self, state: dict) -> None:
        for h, s in zip(self.histories, state["histories"]):
            h.load_state_dict(s)
        for t, packed in zip(self.tables, state["tables"]):
            t.packed.copy_(packed)
