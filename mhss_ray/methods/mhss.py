"""MHSS = CoSELFIE-MLC + CDNR + JCC (METHODS.md section 6).

CDNR: per-class forget rates tau_c = alpha * eps_c. JCC: an entry is refurbishable if at least one
network deems it so, both networks apply the correction, and an entry both deem refurbishable with
different majority labels is not corrected. `method.cdnr` and `method.jcc` switch each on or off, so
the ablation (CoSELFIE, +CDNR, +JCC, both) is four configs of this one method.
"""

from __future__ import annotations

from ..config import MethodConfig
from .coselfie import CoSELFIE


class MHSS(CoSELFIE):
    def __init__(self, cfg: MethodConfig, observed, clean, loss_fn, eps_c, eps, epochs: int = 30, eps_pm=None):
        super().__init__(cfg, observed, clean, loss_fn, eps_c, eps, cdnr=cfg.cdnr, jcc=cfg.jcc, epochs=epochs, eps_pm=eps_pm)
