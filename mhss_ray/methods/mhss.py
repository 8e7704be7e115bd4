"""MHSS = CoSELFIE-MLC + CDNR + JCC (METHODS.md section 6), as two overridden hooks of CoSELFIE.

CDNR: per-class forget rates tau_c = alpha * eps_c. JCC (revision 3, `method.jcc_rule: agree`): an entry
is refurbished where both networks deem it refurbishable with the same majority label, and both networks
apply the correction; `either` (revision 2): where at least one network deems it so, except where both do
with different majority labels. `method.cdnr` and `method.jcc` switch each on or off, so
the ablation (CoSELFIE, +CDNR, +JCC, both) is four configs of this one method.
"""

from __future__ import annotations

import torch

from ..registry import register_method
from .coselfie import AFTER_WARMUP, KEYS, LABELS, WARMUP_READS, CoSELFIE, check_search, warmup_epochs


class MHSS(CoSELFIE):
    def forget_base(self, eps_c: torch.Tensor, eps: float, eps_pm: torch.Tensor | None) -> torch.Tensor:
        """CDNR: each class (per polarity, each class and polarity) forgets at its own rate."""
        if not self.cfg.cdnr:
            return super().forget_base(eps_c, eps, eps_pm)
        return eps_pm.clone() if eps_pm is not None else eps_c.clone()

    def correct(self, indices: torch.Tensor, old: list[torch.Tensor], refurbishable: list[tuple[torch.Tensor, torch.Tensor]]):
        """JCC: R = R_1 & R_2 where the majorities agree (`agree`), or R_1 | R_2 except where both deem an
        entry refurbishable and their majorities disagree (`either`); both networks apply the corrections
        (their label tables stay equal)."""
        if not self.cfg.jcc:
            return super().correct(indices, old, refurbishable)
        (r0, m0), (r1, m1) = refurbishable
        if self.cfg.jcc_rule == "agree":
            r = r0 & r1 & (m0 == m1)
        else:
            r = (r0 | r1) & ~(r0 & r1 & (m0 != m1))
        y = torch.where(r, torch.where(r0, m0, m1), old[0])
        self.stats.add_corrections(indices, old[0], y)  # one correction per entry, applied by both
        return [r, r], [y, y]


register_method(
    "mhss",
    num_networks=2,
    forgets=True,
    estimates_rates=True,
    class_rates=lambda cfg: cfg.method.cdnr,  # CDNR: tau_c = alpha * eps_c
    warmup=True,
    warmup_epochs=warmup_epochs,
    warmup_reads=WARMUP_READS,
    after_warmup_keys=(*AFTER_WARMUP, "cdnr", "jcc", "jcc_rule"),
    histories=True,
    check_search=check_search,
    keys=(*KEYS, "cdnr", "jcc", "jcc_rule"),
    labels=LABELS,
    summary="CoSELFIE + class-dependent noise rates (CDNR) + the joint correction criterion (JCC) (section 6)",
)(MHSS.from_inputs)
