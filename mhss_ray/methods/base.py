"""The interface between the trainer and a noisy-label method.

A method owns the training labels as it sees them and its per-sample state (histories, thresholds,
corrected labels). For each batch it is given the sample indices and each network's logits, and
answers, per network, which entries (image, class) that network learns from and with which labels
(`select`); the default `loss` then applies ASL to those entries (METHODS.md section 1). A method
whose loss is not "ASL on selected entries" (DISC) overrides `loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from ..errors import UserError
from .losses import AsymmetricLoss, masked_batch_loss
from .stats import SelectionStats

if TYPE_CHECKING:
    from ..config import RunConfig


@dataclass
class Selection:
    targets: torch.Tensor  # B x C labels this network learns with
    mask: torch.Tensor | None = None  # B x C, True where it learns from the entry; None = every entry


@dataclass
class MethodInputs:
    """What a method's builder is given (registry.register_method)."""

    cfg: RunConfig  # the whole run config; cfg.method is the method's own section
    observed: torch.Tensor  # N x C uint8, the noisy training labels, on the training device
    clean: torch.Tensor  # N x C uint8, only to measure selection and correction (noise.UNKNOWN where nobody knows)
    loss_fn: AsymmetricLoss
    epochs: int  # of a round of method.restarts (of the run without restarts)
    # methods registered with forgets=True: eps_c and the global eps (section 2), per polarity (2 x C) with polarity_rates split
    eps_c: torch.Tensor | None = None
    eps: float | None = None
    eps_pm: torch.Tensor | None = None


@dataclass
class Batch:
    indices: torch.Tensor  # B sample indices into the training split
    views: list[torch.Tensor]  # the batch's images, one tensor per view (DISC: weak, strong)
    logits: list[list[torch.Tensor]]  # [network][view] -> B x C
    forward: Callable[[int, torch.Tensor], torch.Tensor]  # another forward pass of network k


class Method:
    num_networks: int = 1
    num_views: int = 1
    # N x C bool, True where a person verified the label (noise.verified; self.observed holds it there): such
    # entries are learnt by every network, with that label, never rejected or refurbished (set by the trainer)
    verified: torch.Tensor | None = None

    def __init__(self, observed: torch.Tensor, clean: torch.Tensor, loss_fn: AsymmetricLoss):
        self.observed = observed  # N x C uint8, the noisy training labels, on the training device
        self.clean = clean  # N x C uint8, kept only to measure selection and correction
        self.loss_fn = loss_fn
        self.stats = SelectionStats(observed, clean)
        self.epoch = 0

    notes: list[str] = []  # lines the trainer says at the run's start (a setting the method could not follow, and why)

    def final_note(self) -> str | None:
        """A line the trainer says after the last epoch (e.g. an onset that never came), or None."""
        return None

    def begin_epoch(self, epoch: int) -> None:
        """Called before the first batch of each epoch (0-based)."""
        self.epoch = epoch
        self.stats.reset()

    def restart(self) -> None:
        """A new round of `method.restarts` begins (re-initialised networks): what the method keeps is its own
        choice; epochs count from 0 again in the new round."""

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list[Selection]:
        raise NotImplementedError

    def protect(self, indices: torch.Tensor, selections: list[Selection]) -> list[Selection]:
        """The selections with every verified entry of the batch learnt, with its verified label."""
        if self.verified is None:
            return selections
        v, y = self.verified[indices], self.observed[indices]
        return [Selection(torch.where(v, y, s.targets), None if s.mask is None else s.mask | v) for s in selections]

    def loss(self, batch: Batch) -> torch.Tensor:
        logits = [per_view[0] for per_view in batch.logits]
        selections = self.select(batch.indices, logits)
        if not getattr(self, "_selections_checked", False):  # once: a wrong answer is wrong from the first step
            check_selections(self, selections, logits)
            self._selections_checked = True
        selections = self.protect(batch.indices, selections)
        total = 0.0
        for z, s in zip(logits, selections):
            self.stats.add_training(batch.indices, s.targets, s.mask)
            total = total + masked_batch_loss(self.loss_fn(z, s.targets), s.mask)
        return total

    def heldout_rows(self) -> list[torch.Tensor] | None:
        """Per network, the training rows whose plain-view logits it wants after this epoch (None: none); the
        trainer hands them over through `take_heldout` before `end_epoch` (the onset's held-out folds)."""
        return None

    def take_heldout(self, k: int, indices: torch.Tensor, logits: torch.Tensor) -> None:
        """Network k's eval-mode logits on the plain views of the training rows `indices`."""

    def current_labels(self) -> list[torch.Tensor]:
        """The N x C labels each network's peer learns with now (for the residual noise)."""
        return [self.observed]

    def suspected(self, losses: list[torch.Tensor], observed: torch.Tensor) -> torch.Tensor | None:
        """For mhss-audit, given each network's N x C loss on the observed labels: the entries the method deems
        unreliable (listed where the networks predict the other label), or None when it does not say: the audit
        then lists its corrections only. A method without a selection returns every entry."""
        return None

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after the last batch of each epoch; returns the selection metrics (section 10)."""
        return self.stats.summary(self.current_labels())

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def method_origin(method: Method) -> str:
    """'<name> (<file>)': the method as the user registered it, for error lines."""
    import inspect

    name = getattr(method, "registered_name", type(method).__name__)
    try:
        return f"{name} ({inspect.getsourcefile(type(method))})"
    except TypeError:
        return name


def check_selections(method: Method, selections, logits: list[torch.Tensor]) -> None:
    """A method's `select` must answer once per network, each a Selection of B x C targets and a B x C
    bool mask or None: the loss pairs networks with selections in order, so a short list would leave a
    network untrained without a word."""
    where = f"method {method_origin(method)}: select()"
    if not isinstance(selections, (list, tuple)) or len(selections) != len(logits):
        got = f"{len(selections)} selections" if isinstance(selections, (list, tuple)) else f"a {type(selections).__name__}"
        raise UserError(f"{where} returned {got} for its {len(logits)} networks (one Selection per network, in their order)")
    for k, (s, z) in enumerate(zip(selections, logits)):
        if not isinstance(s, Selection):
            raise UserError(f"{where}: selection {k} is a {type(s).__name__}, not a Selection")
        if tuple(s.targets.shape) != tuple(z.shape):
            raise UserError(f"{where}: selection {k}'s targets are {tuple(s.targets.shape)}, not the batch's {tuple(z.shape)}")
        if s.mask is not None and (tuple(s.mask.shape) != tuple(z.shape) or s.mask.dtype != torch.bool):
            raise UserError(
                f"{where}: selection {k}'s mask is {s.mask.dtype} {tuple(s.mask.shape)}, not bool {tuple(z.shape)} (or None: every entry)"
            )
