"""Suspected label errors of a trained run (`mhss-audit`): every training entry (image, class) the
method corrected, or that it deems unreliable, with what it proposes instead.

An entry is listed when the method's current label differs from the observed one (a correction:
CoSELFIE, MHSS), or when the method deems it unreliable (`Method.suspected`: for the small-loss methods,
every network rejects it at the forget rates of its last epoch; for methods without a selection, ASL and
DISC, every entry; a plugin that says nothing gets its corrections listed only) and the networks' mean
prediction says the other label. Columns:
image (its file), row, class, observed, proposed, corrected, rejected,
networks_agree (each network predicts the proposed label), certainty (1 - the history's uncertainty,
for methods with prediction histories; else empty), confidence (the networks' mean probability of the
proposed label), loss_quantile (of the entry's loss on its observed label within its class: 1 = the
largest) and reason (why it is listed: a correction the networks agree with, one they now doubt, or a
rejection). `image` is empty for an in-memory dataset (the row names the image). Sorted most confident first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..noise import UNKNOWN
from ..registry import call_entry

COLUMNS = (
    "image", "row", "class", "observed", "proposed", "corrected", "rejected", "networks_agree", "certainty", "confidence",
    "loss_quantile", "reason",
)  # fmt: skip
REASONS = {  # (corrected, the networks' mean probability of the proposed label >= 0.5) -> why the entry is listed
    (True, True): "corrected by the method; the networks agree",
    (True, False): "corrected by the method from its prediction history; the networks now lean to the observed label",
    (False, True): "rejected by every network, which predict the proposed label",
    # ASL decides at p* (about 0.75), not 0.5: a mean probability of 0.6 is a negative decision
    (False, False): "rejected by every network, whose decision at the loss's threshold p* is the proposed label",
}


def training_logits(trainer) -> list[torch.Tensor]:
    """Each network's logits (N x C) on the training images, without augmentation, in row order."""
    images = trainer.data.train.images.evaluation_view()
    loader = DataLoader(images, batch_size=trainer.cfg.data.batch_size * 2, shuffle=False, num_workers=trainer.cfg.data.num_workers)
    return trainer.evaluator.network_logits(loader)


def _quantiles(losses: torch.Tensor) -> torch.Tensor:
    """Per column, each entry's rank among its class's losses as a quantile in (0, 1]: 1 = the largest."""
    ranks = torch.argsort(torch.argsort(losses, dim=0, stable=True), dim=0).float() + 1
    return ranks / losses.shape[0]


def audit(trainer) -> pd.DataFrame:
    """The suspected label errors of the run loaded in `trainer` (Trainer with its checkpoint's state)."""
    method = trainer.method
    last = max(trainer.start_epoch - 1, 0)
    method.begin_epoch(trainer.method_epoch(last))  # the forget rates of the last epoch trained
    observed = trainer.observed
    logits = training_logits(trainer)
    probs = torch.stack([torch.sigmoid(z) for z in logits]).mean(0)
    p_star = method.loss_fn.positive_threshold()
    predicted = [(torch.sigmoid(z) > p_star).to(torch.uint8) for z in logits]
    mean_predicted = (probs > p_star).to(torch.uint8)
    current = method.current_labels()
    corrected = torch.zeros_like(observed, dtype=torch.bool)
    proposed = mean_predicted.clone()
    for labels in current:  # a label a network's peer now learns with that differs from the observed one
        changed = labels != observed
        proposed = torch.where(changed & ~corrected, labels, proposed)
        corrected |= changed
    losses = [method.loss_fn(z, observed) for z in logits]
    name = getattr(method, "registered_name", type(method).__name__)  # the method's own word (methods/base.py); None: it says nothing
    rejected = call_entry(f"method {name}: suspected", method.suspected, losses, observed)
    if rejected is None:
        rejected = torch.zeros_like(corrected)
    listed = corrected | (rejected & (proposed != observed))
    if getattr(method, "verified", None) is not None:  # a label a person verified (noise.verified) is not a suspect
        listed &= ~method.verified
    agree = torch.stack([p == proposed for p in predicted]).all(0)
    confidence = torch.where(proposed.bool(), probs, 1 - probs)
    quantile = torch.stack([_quantiles(loss) for loss in losses]).mean(0)
    histories = getattr(method, "histories", None)
    if histories:
        rows_all = torch.arange(observed.shape[0], device=observed.device)
        certainty = 1 - torch.stack([h.uncertainty(rows_all) for h in histories]).min(0).values.float()
    else:
        certainty = torch.full_like(probs, float("nan"))
    rows, cols = listed.nonzero(as_tuple=True)
    images = trainer.data.train.images
    names = [images.path(r) if hasattr(images, "path") else None for r in rows.tolist()]  # in memory: the row says it
    pick = lambda t: t[rows, cols].cpu().numpy()  # noqa: E731
    table = pd.DataFrame(
        {
            "image": names,
            "row": rows.cpu().numpy(),
            "class": np.array(trainer.data.class_names, dtype=object)[cols.cpu().numpy()],
            "observed": pick(observed).astype(np.uint8),
            "proposed": pick(proposed).astype(np.uint8),
            "corrected": pick(corrected),
            "rejected": pick(rejected),
            "networks_agree": pick(agree),
            "certainty": pick(certainty),
            "confidence": pick(confidence),
            "loss_quantile": pick(quantile),
        }
    )
    table["reason"] = [REASONS[(bool(c), bool(p >= 0.5))] for c, p in zip(table["corrected"], table["confidence"])]
    order = table.sort_values(["confidence", "loss_quantile", "row"], ascending=[False, False, True], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def known_precision(trainer, table: pd.DataFrame) -> tuple[int, float] | None:
    """(listed entries whose clean label is known, the share of them whose observed label is wrong): on a
    verified subset (noise.clean_subset) under real noise, or everywhere under synthetic noise; None if none."""
    if table.empty:
        return None
    classes = {c: i for i, c in enumerate(trainer.data.class_names)}
    rows = torch.tensor(table["row"].to_numpy(), dtype=torch.long, device=trainer.clean.device)  # a copy: pandas arrays are read-only
    cols = torch.as_tensor([classes[c] for c in table["class"]], dtype=torch.long, device=trainer.clean.device)
    clean, observed = trainer.clean[rows, cols], trainer.observed[rows, cols]
    known = clean != UNKNOWN
    if not bool(known.any()):
        return None
    return int(known.sum()), float((clean[known] != observed[known]).float().mean())
