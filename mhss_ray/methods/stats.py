"""Label-level selection and correction metrics, against the clean labels (METHODS.md section 10)."""

from __future__ import annotations

import torch

from ..noise import UNKNOWN


SELECTION_KEYS = (
    "selection_precision", "selection_recall", "correction_precision", "corrections", "residual_noise",
    "labels_changed", "labels_changed_precision",
)  # fmt: skip


class SelectionStats:
    """Counts over one epoch, summed over the networks; kept on the device, read once per epoch.

    selection_precision: share of the entries trained on whose training label equals the clean one.
    selection_recall: share of the entries observed correctly that are trained on.
    correction_precision: share of label changes whose new label equals the clean one.
    corrections: number of label changes in the epoch.
    residual_noise: share of entries whose current label differs from the clean one (epoch end).
    labels_changed, labels_changed_precision: the run so far, not the epoch: entries whose current
    label differs from the observed one (summed over the networks), and the share of those (known
    entries) that now equal the clean label; an entry changed back and forth counts by where it ended.
    With real noise the clean labels are known on a verified subset only (UNKNOWN elsewhere): the
    ratios are computed on the known entries (NaN without any); `corrections` counts every change.
    """

    def __init__(self, observed: torch.Tensor, clean: torch.Tensor):
        self.observed, self.clean = observed, clean
        self.known = clean != UNKNOWN
        self.reset()

    def reset(self) -> None:
        z = lambda: torch.zeros((), dtype=torch.long, device=self.clean.device)  # noqa: E731
        self.trained, self.trained_correct, self.clean_seen, self.clean_trained = z(), z(), z(), z()
        self.changed, self.changed_known, self.changed_correct = z(), z(), z()

    def add_training(self, indices: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> None:
        clean = self.clean[indices]
        observed_ok = self.observed[indices] == clean  # False where unknown: observed labels are 0/1
        mask = torch.ones_like(observed_ok) if mask is None else mask.bool()
        self.trained += (mask & self.known[indices]).sum()
        self.trained_correct += (mask & (targets.to(clean.dtype) == clean)).sum()
        self.clean_seen += observed_ok.sum()
        self.clean_trained += (mask & observed_ok).sum()

    def add_corrections(self, indices: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> None:
        changed = old != new
        self.changed += changed.sum()
        self.changed_known += (changed & self.known[indices]).sum()
        self.changed_correct += (changed & (new == self.clean[indices])).sum()

    def summary(self, current_labels: list[torch.Tensor]) -> dict[str, float]:
        def ratio(a, b):
            return float(a) / float(b) if int(b) > 0 else float("nan")

        known = self.known.sum()
        residual = sum(ratio(((y != self.clean) & self.known).sum(), known) for y in current_labels) / len(current_labels)
        departed = [(y != self.observed) for y in current_labels]
        departed_known = sum((d & self.known).sum() for d in departed)
        departed_correct = sum((d & (y == self.clean)).sum() for d, y in zip(departed, current_labels))
        return {
            "labels_changed": int(sum(d.sum() for d in departed)),
            "labels_changed_precision": ratio(departed_correct, departed_known),
            "selection_precision": ratio(self.trained_correct, self.trained),
            "selection_recall": ratio(self.clean_trained, self.clean_seen),
            "correction_precision": ratio(self.changed_correct, self.changed_known),
            "corrections": int(self.changed),
            "residual_noise": residual,
        }
