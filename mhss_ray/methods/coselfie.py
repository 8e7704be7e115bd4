"""CoSELFIE-MLC (METHODS.md section 5): Co-teaching plus SELFIE's refurbishment, at label level.

Revision 2. Each network k keeps a history of its last q predicted labels per entry (the label with
the smaller loss: p > p*, `method.history_threshold`) and its own table of labels. After the
warm-up, network k ranks its losses on its labels before this batch's corrections to select S_k;
an entry S_k rejects whose full history has uncertainty u <= theta is refurbishable (R_k) and takes
network k's majority prediction as its label from then on (corrections persist); an entry S_k keeps
is never changed by network k. Network k's peer learns from S_k | R_k with network k's labels. MHSS
(mhss.py) overrides two hooks: `forget_base` (CDNR) and `correct` (JCC).
"""

from __future__ import annotations

import math

import torch

from ..config import MethodConfig, default_warmup
from ..errors import UserError
from ..registry import register_method
from ..rounds import RoundSchedule
from .base import Selection
from .forgetting import ForgettingMethod
from .history import PredictionHistory
from .labels import LabelTable
from .selection import small_loss_mask


class CoSELFIE(ForgettingMethod):
    def prepare(self, epochs: int) -> None:
        self.warmup = round_warmup(self.cfg, epochs)
        n, c = self.observed.shape
        dev = self.observed.device
        self.histories = [PredictionHistory(n, c, self.cfg.q, dev) for _ in range(2)]
        self.tables = [LabelTable(self.observed) for _ in range(2)]  # kept equal under JCC
        self.predict = PredictedLabel(self.cfg.history_threshold, self.loss_fn, self.observed)
        self.changed = [torch.zeros(c, dtype=torch.long, device=dev) for _ in range(2)]  # per column, now

    def clock_onset(self) -> int:
        return self.warmup

    def estimate_until(self) -> int:
        return max(self.warmup - 1, 0)  # the selection starts after the warm-up: estimates refresh until then

    def set_rates(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> None:
        super().set_rates(eps_c, eps, eps_pm)
        # method.correction_budget: at most ceil(alpha * eps_c * N) labels of column c differ from the observed ones
        n = self.observed.shape[0]
        self.budget = torch.ceil(self.cfg.alpha * eps_c.double() * n - 1e-9).long() if self.cfg.correction_budget else None

    def correct(self, indices: torch.Tensor, old: list[torch.Tensor], refurbishable: list[tuple[torch.Tensor, torch.Tensor]]):
        """(R_k, labels_k) per network from each network's (R_k, majority label): each network applies
        its own corrections to its own labels (section 5)."""
        refurb = [r for r, _ in refurbishable]
        labels = [torch.where(r, majority, o) for (r, majority), o in zip(refurbishable, old)]
        for k in range(2):
            self.stats.add_corrections(indices, old[k], labels[k])
        return refurb, labels

    def restart(self) -> None:
        """SELFIE's restart: the corrected labels stay, the histories of the discarded networks go."""
        for h in self.histories:
            h.bits.zero_()

    def refurbishable(
        self, k: int, indices: torch.Tensor, selected: torch.Tensor, current: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R_k, majority label) of network k for the batch: certain entries its small-loss trick
        rejected (revision 2); empty until the history is full. A tie keeps the `current` label."""
        history = self.histories[k]
        majority = history.majority(indices, current)
        if self.epoch + 1 < history.q:  # every sample is recorded once per epoch
            return torch.zeros_like(majority, dtype=torch.bool), majority
        return ~selected & (history.uncertainty(indices) <= self.cfg.theta), majority

    def within_budget(self, k: int, indices: torch.Tensor, r: torch.Tensor, majority: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """R_k without the new departures from the observed labels that would take a column past its
        budget; the most certain ones (lowest uncertainty) go first."""
        observed = self.observed[indices]
        new = r & (majority != observed) & (old == observed)
        room = (self.budget - self.changed[k]).clamp(min=0)
        # no early return when every column is within its budget: testing that would wait for the GPU
        # every step, and the ranks below then remove nothing (a column's new entries rank below its count)
        u = self.histories[k].uncertainty(indices).masked_fill(~new, float("inf"))
        ranks = torch.argsort(torch.argsort(u, dim=0, stable=True), dim=0)
        return r & ~(new & (ranks >= room.unsqueeze(0)))

    def _select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        for history, z in zip(self.histories, logits):
            history.record(indices, self.predict(z.detach()))
        old = [t.get(indices) for t in self.tables]
        if not self.selecting():  # the warm-up: all entries, no selection, no correction
            return [Selection(old[0]), Selection(old[1])]

        # S_k is ranked on the labels before this batch's corrections; only entries it rejects are refurbished
        tau = self.tau()
        masks = [small_loss_mask(self.loss_fn(z.detach(), y), tau, self.cfg.granularity, y) for z, y in zip(logits, old)]
        r = [self.refurbishable(k, indices, masks[k], old[k]) for k in range(2)]
        if self.verified is not None:  # a verified label is never refurbished
            r = [(rk & ~self.verified[indices], mk) for rk, mk in r]
        if self.budget is not None:
            r = [(self.within_budget(k, indices, rk, mk, old[k]), mk) for k, (rk, mk) in enumerate(r)]
        refurb, labels = self.correct(indices, old, r)
        observed = self.observed[indices]
        for k in range(2):
            if self.budget is not None:  # counted only where a budget needs it (every training step)
                self.changed[k] += (labels[k] != observed).sum(0) - (old[k] != observed).sum(0)
            self.tables[k].set(indices, labels[k])
        # network k's peer learns from S_k | R_k, with the corrected labels on R_k
        return [Selection(labels[1], masks[1] | refurb[1]), Selection(labels[0], masks[0] | refurb[0])]

    def current_labels(self) -> list[torch.Tensor]:
        return [t.all() for t in self.tables]

    def state_dict(self) -> dict:
        histories = [h.state_dict() for h in self.histories]
        return {"histories": histories, "tables": [t.packed.cpu() for t in self.tables], **super().state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for h, s in zip(self.histories, state["histories"]):
            h.load_state_dict(s)
        for k, (t, packed) in enumerate(zip(self.tables, state["tables"])):
            t.packed.copy_(packed)
            self.changed[k] = (t.all() != self.observed).sum(0)
        super().load_state_dict(state)  # the estimate (RateEstimation)


class PredictedLabel:
    """The binary prediction a history records (section 5, revision 2, `method.history_threshold`):
    `loss`: z > logit(p*), where label 1 has the smaller loss; a number t: z > logit(t); `rank`: the
    top round(pi_c * B) logits of each column, pi_c the observed positive share of class c."""

    def __init__(self, rule, loss_fn, observed: torch.Tensor):
        self.rule = rule
        if rule == "rank":
            self.share = observed.float().mean(0)
        else:
            p = loss_fn.positive_threshold() if rule == "loss" else float(rule)
            p = min(max(p, 1e-6), 1 - 1e-6)
            self.logit = math.log(p / (1 - p))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.rule != "rank":
            return z > self.logit
        b = z.shape[0]
        top = torch.round(self.share.to(z.device) * b).long()  # per column
        ranks = torch.argsort(torch.argsort(z, dim=0, descending=True, stable=True), dim=0)
        return ranks < top.unsqueeze(0)


KEYS = (
    "alpha", "t_k", "noise_rate_source", "noise_rate_estimator", "noise_rate_refresh", "noise_rates", "noise_rate", "polarity_rates",
    "omission_share", "granularity", "q", "history_threshold", "theta", "warmup", "correction_budget", "restarts", "noise_rate_holdout",
    "onset", "onset_patience",
)  # fmt: skip
LABELS = {"method.alpha": "α", "method.theta": "θ", "method.warmup": "warm-up"}
# while estimating, the held-out folds change what the networks learn; restarts change the rounds' schedules
WARMUP_READS = ("noise_rate_source", "noise_rate_holdout", "noise_rate_refresh", "restarts", "onset", "onset_patience")
# read only once the selection starts (the histories, the label tables and the estimate do not depend on them)
AFTER_WARMUP = (
    "alpha", "t_k", "theta", "noise_rates", "noise_rate", "granularity", "polarity_rates", "omission_share", "correction_budget", "warmup",
)  # fmt: skip


def uncertainty_levels(q: int) -> list[float]:
    """The values a full history of q predictions can give u = H(k/q) / log 2 (section 5): theta
    decides only where it crosses one of them."""
    return sorted({round(-(m * math.log2(m) + (1 - m) * math.log2(1 - m)) if 0 < m < 1 else 0.0, 4) for m in (k / q for k in range(q + 1))})


def check_search(dimensions: list, cfg) -> list[str]:
    """The registry's search-space rule of CoSELFIE and MHSS: a searched theta range in which no uncertainty level of
    the q in use lies makes every trial take the same decisions, a dead search dimension (revision 2): refused.
    Else, for the plan, the levels theta decides at."""
    theta = next((d for d in dimensions if d.key == "method.theta"), None)
    if theta is None or any(d.key == "method.q" for d in dimensions):
        return []
    q = cfg.method.q
    levels = uncertainty_levels(q)
    low, high = theta.bounds()
    shown = ", ".join(f"{v:g}" for v in levels)
    if not any(low < level <= high for level in levels):
        raise UserError(
            f"search.method.theta: every theta in [{low:g}, {high:g}] makes the same corrections with method.q {q} "
            f"(uncertainty levels {shown}); widen the range across a level or raise method.q"
        )
    return [f"theta decides at the uncertainty levels of q {q}: {shown}"]


def round_warmup(m: MethodConfig, epochs: int) -> int:
    """The warm-up of a round of `epochs` epochs: method.warmup, else max(q + ceil(E/10), ceil(E/3))."""
    return m.warmup if m.warmup is not None else default_warmup(m.q, epochs)


def warmup_epochs(cfg) -> int:
    """The epochs of the first round's warm-up (the registry's warmup_epochs: config checks, studies)."""
    return round_warmup(cfg.method, RoundSchedule.of(cfg).length)


register_method(
    "coselfie", num_networks=2, forgets=True, estimates_rates=True, warmup=True, warmup_epochs=warmup_epochs, warmup_reads=WARMUP_READS,
    after_warmup_keys=AFTER_WARMUP, histories=True, check_search=check_search, keys=KEYS, labels=LABELS,
    summary="Co-teaching + SELFIE's label refurbishment (section 5)",
)(CoSELFIE.from_inputs)  # fmt: skip
