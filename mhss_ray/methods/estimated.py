"""Noise rates estimated from the networks themselves (`method.noise_rate_source: estimated`).

While it estimates, each of the method's two networks leaves out its own random share of the training
images (`method.noise_rate_holdout`, 0.2: disjoint folds, one per network) and records its predicted
probabilities on the images of its fold as it sees them, shifted as DISC's (revision 2): sigmoid(z - logit
p*), 0.5 where ASL's two losses are equal, which measured closer than the raw sigmoid under ASL. The
estimate (noise.py: a likelihood fit by default, a confident-joint count, or a mixture) reads those
out-of-fold probabilities with the observed labels. With holdout 0 every image is learnt and recorded (in-sample): by the end of a warm-up a
network has memorised much of the noise, and in-sample estimates fall far below the truth
(benchmarks/results/noise_estimation.md).

Estimates refresh after every epoch until the method selects (the last epoch of its warm-up, or of
Co-teaching's ramp), and then stay, the folds rejoining the training; with `method.noise_rate_refresh:
every_epoch` they refresh after every epoch and the folds stay out all run. Until the first estimate the
rates are 0 (nothing is forgotten; every method keeps all entries in its first epoch anyway).

With `method.onset: plateau` the fold also tells when the method starts: only the second network holds one
out (the first, whose predictions are evaluated, learns every image), until the onset is found
(`last_refresh` None until then); the probabilities are the network's on the plain images of its fold after
the epoch (eval mode, `take`), not the augmented views it trained on: the onset reads their mAP against the
observed labels, and the estimate reads them too. Without estimated rates (`estimating` False) the fold
serves the onset alone.
"""

from __future__ import annotations

import torch

from ..config import MethodConfig
from ..noise import ESTIMATORS, at_cap, entry_rates


class EstimatedRates:
    def __init__(
        self,
        cfg: MethodConfig,
        observed: torch.Tensor,
        last_refresh: int | None,
        seed: int = 0,
        networks: int = 2,
        shift: float = 0.0,
        estimating: bool = True,
        plain_views: bool | None = None,
    ):
        self.observed = observed
        self.shift = shift  # logit(p*): the recorded probabilities are sigmoid(z - shift), 0.5 where ASL's two losses are equal
        self.estimator = ESTIMATORS[cfg.noise_rate_estimator]
        self.estimating = estimating
        self.every_epoch = cfg.noise_rate_refresh == "every_epoch" and estimating
        # probabilities from the eval pass over each fold (take), not training: the onset's plateau (None: as cfg says)
        self.plain_views = cfg.onset == "plateau" if plain_views is None else plain_views
        # 0-based epoch after which the estimates stay and the folds rejoin (without every_epoch); None: not known yet
        self.last_refresh = last_refresh
        n = observed.shape[0]
        # fold[i]: the network that leaves image i out while estimating (-1: none); in-sample: every network records every image
        self.fold = torch.full((n,), -1, dtype=torch.long, device=observed.device)
        share = cfg.noise_rate_holdout
        self.networks = networks
        if share > 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).to(observed.device)
            size = int(round(share * n))
            # on a plateau only the last network holds out: the first, the one evaluated, learns every image (both
            # holding out cost its test mAP 4 points at 1,000 images, docs/methods.md)
            for slot, k in enumerate([networks - 1] if self.plain_views else range(networks)):
                self.fold[order[slot * size : (slot + 1) * size]] = k
        self.has_folds = share > 0 and n > 0  # a Python bool: the training step never waits on the device for it
        self.probs = torch.zeros(observed.shape, dtype=torch.float16, device=observed.device)
        self.polarity: torch.Tensor | None = None  # 2 x C once estimated: wrong share of observed negatives, positives
        self.epoch = 0

    @property
    def holding_out(self) -> bool:
        return self.has_folds and (self.every_epoch or self.last_refresh is None or self.epoch <= self.last_refresh)

    def heldout_rows(self) -> list[torch.Tensor] | None:
        """Per network, the training rows of its fold whose plain-view predictions it wants after this epoch."""
        if not (self.plain_views and self.holding_out):
            return None
        return [torch.nonzero(self.fold == k).flatten() for k in range(self.networks)]

    def take(self, k: int, indices: torch.Tensor, logits: torch.Tensor) -> None:
        """Network k's logits on the plain views of its fold's images `indices` (the eval pass after an epoch)."""
        self.probs[indices] = torch.sigmoid(logits.float() - self.shift).to(self.probs.dtype)

    def fold_scores(self) -> list[float]:
        """Each network's mAP on its fold against the observed labels, from the latest probabilities (columns with
        both polarities in the fold). What a user has, without clean labels: it stops rising when memorisation starts."""
        from sklearn.metrics import average_precision_score

        out = []
        for k in range(self.networks):
            rows = self.fold == k
            if not bool(rows.any()):  # a network that holds nothing out (on a plateau, the first)
                continue
            y, p = self.observed[rows].cpu().numpy(), self.probs[rows].float().cpu().numpy()
            cols = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
            out.append(100.0 * sum(average_precision_score(y[:, c], p[:, c]) for c in cols) / max(len(cols), 1))
        return out

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def learns(self, k: int, indices: torch.Tensor) -> torch.Tensor | None:
        """B x C mask of the batch's entries network k may learn from now (None: all of them)."""
        if not self.holding_out:
            return None
        return (self.fold[indices] != k).unsqueeze(1).expand(-1, self.observed.shape[1])

    def restrict(self, selections: list, indices: torch.Tensor) -> list:
        """The batch's selections (one per network: what it learns from) without the images its fold holds out."""
        for k, s in enumerate(selections):
            allowed = self.learns(k, indices)
            if allowed is not None:
                s.mask = allowed if s.mask is None else s.mask & allowed
        return selections

    def record(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> None:
        if self.plain_views:  # the eval pass after the epoch records them (take)
            return
        probs = [torch.sigmoid(z.detach().float() - self.shift) for z in logits]
        fold = self.fold[indices]
        if not self.has_folds:  # in-sample: the networks' mean on every image
            self.probs[indices] = torch.stack(probs).mean(0).to(self.probs.dtype)
            return
        for k, p in enumerate(probs):
            mine = fold == k
            self.probs[indices[mine]] = p[mine].to(self.probs.dtype)

    def refresh(self, epoch: int) -> bool:
        """After epoch `epoch` (0-based): estimate again if it is time; True when the rates changed."""
        if not self.estimating or (self.last_refresh is not None and epoch > self.last_refresh and not self.every_epoch):
            return False
        self.polarity = self.estimate(self.estimator)
        return True

    def estimate(self, estimator) -> torch.Tensor:
        """2 x C rates by `estimator` (noise.ESTIMATORS) from the recorded probabilities of the held-out images."""
        rows = self.fold >= 0 if self.has_folds else slice(None)
        return estimator(self.observed[rows], self.probs[rows])

    def rates(self) -> tuple[torch.Tensor, float, torch.Tensor]:
        """(eps_c, global eps, 2 x C per-polarity rates), as noise.noise_rates and polarity_rates give them."""
        eps_c = entry_rates(self.observed, self.polarity)
        return eps_c, float(eps_c.mean()), self.polarity.clone()

    def metrics(self) -> dict:
        """Per class (the trainer names them noise_rate_hat_<class>), once there is an estimate."""
        if self.polarity is None:
            return {}
        return {
            "noise_rate_hat": [float(x) for x in entry_rates(self.observed, self.polarity)],
            # 1 where a polarity's rate is the estimator's cap (0.5), not a measurement (a rare class, a network that knows little)
            "noise_rate_hat_capped": [int(x) for x in at_cap(self.polarity)],
        }

    def state_dict(self) -> dict:
        state = {"probs": self.probs.cpu(), "polarity": None if self.polarity is None else self.polarity.cpu()}
        return {**state, "last_refresh": self.last_refresh} if self.plain_views else state

    def load_state_dict(self, state: dict) -> None:
        self.probs.copy_(state["probs"])
        self.polarity = None if state["polarity"] is None else state["polarity"].to(self.observed.device)
        if self.plain_views:
            self.last_refresh = state["last_refresh"]


class RateEstimation:
    """What a forgetting method (a Method with `set_rates` and `_select`) does with `self.estimated`: record
    each batch and keep the held-out fold out of its networks' selections, re-estimate after an epoch,
    report the estimate, and carry it in the method's state. Inherit it before Method."""

    estimated: EstimatedRates | None = None

    def select(self, indices: torch.Tensor, logits: list[torch.Tensor]) -> list:
        if self.estimated is None:
            return self._select(indices, logits)
        self.estimated.record(indices, logits)
        return self.estimated.restrict(self._select(indices, logits), indices)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self.estimated is not None:
            self.estimated.begin_epoch(epoch)

    def heldout_rows(self) -> list[torch.Tensor] | None:
        return self.estimated.heldout_rows() if self.estimated is not None else None

    def take_heldout(self, k: int, indices: torch.Tensor, logits: torch.Tensor) -> None:
        self.estimated.take(k, indices, logits)

    def end_epoch(self, epoch: int) -> dict:
        if self.estimated is not None and self.estimated.refresh(epoch):
            self.set_rates(*self.estimated.rates())
        return {**super().end_epoch(epoch), **(self.estimated.metrics() if self.estimated is not None else {})}

    def state_dict(self) -> dict:
        state = super().state_dict()
        return {**state, "estimated": self.estimated.state_dict()} if self.estimated is not None else state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.estimated is not None:
            self.estimated.load_state_dict(state["estimated"])
            if self.estimated.polarity is not None:
                self.set_rates(*self.estimated.rates())
