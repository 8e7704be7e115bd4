"""DISC-MLC (METHODS.md section 7): dynamic instance-specific selection and correction, label level.

One network sees two views of each image (weak; strong = RandAugment). For every entry and view the
confidence in the observed label is compared with a per-entry dynamic threshold:
clean = both views above their thresholds, hard = exactly one, purified = neither, and the mean of
the two views confident in the other value above min((t_w + t_s) / 2 + sigma, 0.99) (its label flips
for this pass). ASL on clean and purified entries (both views), binary GCE on hard entries (both
views), and with mixup_alpha > 0 an ASL term on mixed weak views whose kept masks are ANDed.
Thresholds start at 0.5 and follow t <- lambda * t + (1 - lambda) * max(P, 1 - P) from the epoch's
recorded probabilities, at the end of the last warm-up epoch and of every epoch after it.
Revision 2: with `method.disc_shift` the probabilities behind the confidences and thresholds are
sigmoid(z - logit p*), p* the point where ASL's two losses are equal (0.5 for BCE: no shift).
Choice where the spec is silent: the sets are formed from the current batch's probabilities against
the thresholds of the previous epoch end; purified flips are not carried into later epochs.
"""

from __future__ import annotations

import math

import torch

from ..config import MethodConfig
from ..registry import register_method
from .base import Batch, Method, MethodInputs
from .labels import LabelTable
from .losses import masked_batch_loss


def binary_gce(logits: torch.Tensor, targets: torch.Tensor, q: float) -> torch.Tensor:
    """Generalised cross-entropy per entry: (1 - p_y^q) / q, p_y the probability of the target."""
    p = torch.sigmoid(logits.float())
    p_y = torch.where(targets.bool(), p, 1 - p).clamp(min=1e-7)
    return (1 - p_y.pow(q)) / q


def disc_sets(p_w, p_s, labels, t_w, t_s, sigma: float):
    """(clean, hard, purified) masks of section 7 for probabilities and thresholds of a batch."""
    positive = labels.bool()
    above_w = torch.where(positive, p_w, 1 - p_w) > t_w
    above_s = torch.where(positive, p_s, 1 - p_s) > t_s
    clean = above_w & above_s
    hard = above_w ^ above_s
    mean = (p_w + p_s) / 2
    other = torch.where(positive, 1 - mean, mean)
    purified = ~(clean | hard) & (other > torch.clamp((t_w + t_s) / 2 + sigma, max=0.99))
    return clean, hard, purified


class DISC(Method):
    num_networks = 1
    num_views = 2

    def __init__(self, cfg: MethodConfig, observed, clean, loss_fn):
        super().__init__(observed, clean, loss_fn)
        self.cfg = cfg
        self.warmup = self.default_warmup(cfg)
        n, c = observed.shape
        dev = observed.device
        self.t_w = torch.full((n, c), 0.5, device=dev)
        self.t_s = torch.full((n, c), 0.5, device=dev)
        self.p_w = torch.zeros((n, c), dtype=torch.float16, device=dev)  # this epoch's recorded probabilities
        self.p_s = torch.zeros((n, c), dtype=torch.float16, device=dev)
        self.table = LabelTable(observed)  # observed labels with the latest purified flips
        # revision 2, method.disc_shift: the confidences assume p = 0.5 is undecided; under ASL the
        # undecided point is p* (~0.75), so they are computed from sigmoid(z - logit p*)
        p_star = loss_fn.positive_threshold() if cfg.disc_shift else 0.5
        self.shift = math.log(p_star / (1 - p_star))

    @staticmethod
    def default_warmup(cfg: MethodConfig) -> int:
        return cfg.warmup if cfg.warmup is not None else 10  # plain ASL on both views first

    def loss(self, batch: Batch) -> torch.Tensor:
        idx = batch.indices
        z_w, z_s = batch.logits[0]
        p_w, p_s = torch.sigmoid(z_w.detach().float() - self.shift), torch.sigmoid(z_s.detach().float() - self.shift)
        self.p_w[idx], self.p_s[idx] = p_w.half(), p_s.half()
        y = self.observed[idx]
        if self.epoch < self.warmup:  # plain ASL on both views
            self.stats.add_training(idx, y, None)
            return masked_batch_loss(self.loss_fn(z_w, y), None) + masked_batch_loss(self.loss_fn(z_s, y), None)

        clean, hard, purified = disc_sets(p_w, p_s, y, self.t_w[idx], self.t_s[idx], self.cfg.disc_sigma)
        if self.verified is not None:  # a verified entry is clean: learnt with its label, never purified
            v = self.verified[idx]
            clean, hard, purified = clean | v, hard & ~v, purified & ~v
        y_used = torch.where(purified, 1 - y, y)
        old = self.table.get(idx)
        self.table.set(idx, y_used)
        self.stats.add_corrections(idx, old, y_used)
        kept = clean | purified
        self.stats.add_training(idx, y_used, kept | hard)
        total = 0.0
        for z in (z_w, z_s):
            total = total + masked_batch_loss(self.loss_fn(z, y_used), kept) + masked_batch_loss(binary_gce(z, y, self.cfg.gce_q), hard)
        if self.cfg.mixup_alpha > 0:
            lam = float(torch.distributions.Beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha).sample())
            perm = torch.randperm(len(idx), device=idx.device)
            x_w = batch.views[0]
            z_mix = batch.forward(0, lam * x_w + (1 - lam) * x_w[perm])
            y_mix = lam * y_used.float() + (1 - lam) * y_used[perm].float()
            total = total + masked_batch_loss(self.loss_fn(z_mix, y_mix), kept & kept[perm])
        return total

    def end_epoch(self, epoch: int) -> dict[str, float]:
        if epoch >= self.warmup - 1:
            lam = self.cfg.disc_lambda
            for t, p in ((self.t_w, self.p_w), (self.t_s, self.p_s)):
                p = p.float()
                t.mul_(lam).add_((1 - lam) * torch.maximum(p, 1 - p))
        return super().end_epoch(epoch)

    def current_labels(self) -> list[torch.Tensor]:
        return [self.table.all()]

    def suspected(self, losses, observed):
        return torch.ones_like(observed, dtype=torch.bool)  # no small-loss selection: every entry the networks disagree with

    def state_dict(self) -> dict:
        return {"t_w": self.t_w.cpu(), "t_s": self.t_s.cpu(), "table": self.table.packed.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.t_w.copy_(state["t_w"])
        self.t_s.copy_(state["t_s"])
        self.table.packed.copy_(state["table"])


@register_method(
    "disc", num_networks=1, num_views=2, warmup=True, warmup_epochs=lambda cfg: DISC.default_warmup(cfg.method),
    whole_batch_key="mixup_alpha", whole_batch_use="DISC's mixup",
    keys=("warmup", "disc_lambda", "disc_sigma", "gce_q", "mixup_alpha", "disc_shift"),
    labels={"method.disc_sigma": "σ", "method.warmup": "warm-up"},
    summary="dynamic instance-specific selection and correction on a weak and a strong view (section 7)",
)  # fmt: skip
def build(inputs: MethodInputs) -> DISC:
    return DISC(inputs.cfg.method, inputs.observed, inputs.clean, inputs.loss_fn)
