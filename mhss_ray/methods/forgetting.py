"""The base of the forgetting methods (Co-teaching, CoSELFIE, MHSS; METHODS.md sections 2-4): two networks, each
forgetting the largest-loss share tau = alpha * eps of every column, ramped in over t_k epochs.

It owns the noise rates (given, the oracle's, verified or estimated from the networks: methods/estimated.py),
the forget rates they make, and the onset (`method.onset`): on the clock, the epoch its subclass names
(`clock_onset`: CoSELFIE's warm-up, Co-teaching's first epoch with its ramp); on a plateau, the epoch after
the held-out folds' mAP stopped rising (onset.py), from which it forgets at full rate. A subclass adds its own
state (`prepare`), says until when an estimate refreshes on the clock (`estimate_until`), what the rates
multiply (`forget_base`: MHSS's class-dependent rates) and how it selects (`_select`, once `selecting()`)."""

from __future__ import annotations

import torch

from ..config import MethodConfig
from .base import Method, MethodInputs
from .estimated import EstimatedRates, RateEstimation
from .onset import PlateauOnset
from .selection import RejectsSmallLoss, forget_rates


MIN_ONSET_FOLD = 20  # held-out images below which a plateau of their mAP says nothing (the onset falls back to the clock)


def fold_too_small(cfg: MethodConfig, observed: torch.Tensor) -> str | None:
    """Why the held-out fold cannot tell the onset (too few images, or no class with both labels among them), else None."""
    size = int(round(cfg.noise_rate_holdout * observed.shape[0]))
    if size < MIN_ONSET_FOLD:
        share = f"noise_rate_holdout {cfg.noise_rate_holdout:g} of {observed.shape[0]}"
        return f"the held-out fold holds {size} images ({share}; under {MIN_ONSET_FOLD})"
    return None


class ForgettingMethod(RejectsSmallLoss, RateEstimation, Method):
    num_networks = 2

    def __init__(
        self, cfg: MethodConfig, observed, clean, loss_fn, eps_c: torch.Tensor, eps: float, epochs: int = 30, eps_pm=None, seed: int = 0
    ):
        super().__init__(observed, clean, loss_fn)
        self.cfg = cfg
        self.split = eps_pm is not None  # per-polarity rates (polarity_rates: split)
        self.prepare(epochs)
        self.set_rates(eps_c, eps, eps_pm)
        too_few = cfg.onset == "plateau" and fold_too_small(cfg, observed)
        if too_few:  # the fixed epoch as the fallback, said at the run's start (Method.notes)
            self.notes = [
                f"method.onset: plateau: {too_few}: too few to tell when memorisation starts; {cfg.name} forgets on the clock "
                f"instead (from epoch {self.clock_onset() + 1}, as method.onset: clock)"
            ]
        self.plateau = PlateauOnset(cfg.onset_patience) if cfg.onset == "plateau" and not too_few else None
        self.onset: int | None = None if self.plateau is not None else self.clock_onset()  # the first selecting epoch, 0-based
        estimating = cfg.noise_rate_source == "estimated"
        self.estimated = (
            EstimatedRates(
                cfg,
                observed,
                None if self.plateau else self.estimate_until(),
                seed,
                shift=loss_fn.positive_logit(),
                estimating=estimating,
                plain_views=self.plateau is not None,
            )
            if estimating or self.plateau is not None
            else None
        )

    @classmethod
    def from_inputs(cls, inputs: MethodInputs) -> "ForgettingMethod":
        """The registry's builder: the method from what build_method gives every method."""
        i = inputs
        return cls(i.cfg.method, i.observed, i.clean, i.loss_fn, i.eps_c, i.eps, i.epochs, i.eps_pm, i.cfg.seed)

    def prepare(self, epochs: int) -> None:
        """The method's own state, made before its rates are set (`epochs`: of a round of method.restarts)."""

    def clock_onset(self) -> int:
        """The first epoch (0-based) that selects on the clock: Co-teaching's, whose forget rate ramps in over t_k."""
        return 0

    def selecting(self) -> bool:
        return self.onset is not None and self.epoch >= self.onset

    def estimate_until(self) -> int:
        """The last epoch (0-based) whose end refreshes an estimate: the ramp reaches full forgetting at t_k."""
        return max(self.cfg.t_k - 1, 0)

    def set_rates(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> None:
        self.eps = self.forget_base(eps_c, eps, eps_pm if self.split else None)

    def forget_base(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> torch.Tensor:
        """The eps the forget rates multiply by alpha (section 2): the global eps for every class; per
        polarity (eps_pm, 2 x C: observed negatives, positives; revision 2) the classes' mean of each row."""
        if eps_pm is not None:
            return eps_pm.mean(1, keepdim=True).expand_as(eps_pm).clone()
        return torch.full_like(eps_c, eps)

    def tau(self) -> torch.Tensor:
        if self.plateau is not None:  # nothing before the onset, everything from it: the ramp's wait is the onset's
            return forget_rates(self.eps, self.cfg.alpha * self.selecting(), self.epoch, 0)
        return forget_rates(self.eps, self.cfg.alpha, self.epoch, self.cfg.t_k)

    def end_epoch(self, epoch: int) -> dict:
        """On a plateau: the folds' mAP of this epoch, and the onset once it stops rising (the estimate, if any, is
        made now for the last time and the folds rejoin)."""
        found = {}
        if self.plateau is not None and self.onset is None:
            scores = self.estimated.fold_scores()
            found["heldout_mAP"] = sum(scores) / len(scores)
            if self.plateau.update(found["heldout_mAP"]):
                self.onset = epoch + 1
                self.estimated.last_refresh = epoch
                found["onset"] = self.onset
        return {**super().end_epoch(epoch), **found}

    def final_note(self) -> str | None:
        if self.plateau is not None and self.onset is None:
            return (
                f"onset: none: the held-out images' mAP reached a new best within every {self.cfg.onset_patience} epochs to the "
                f"last; {self.cfg.name} never forgot or corrected (it trained as its base loss on every label)"
            )
        return None

    def state_dict(self) -> dict:
        state = super().state_dict()
        return state if self.plateau is None else {**state, "onset": self.onset, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.plateau is not None:
            self.onset = state["onset"]
            self.plateau.load_state_dict(state["plateau"])
        super().load_state_dict(state)
