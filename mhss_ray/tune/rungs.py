"""Where ASHA's rungs fall, and whether the searched trials can differ there yet.

A method with a warm-up (CoSELFIE, MHSS, DISC) trains every entry alike until the warm-up ends: α, θ and
the noise rates change nothing before it. A rung at or before the longest warm-up of the space compares
trials that are still in their warm-up, and ASHA then cuts by tie-break (in the demo study of METHODS.md
revision 2, two of three trials tied at 59.687 were stopped at epoch 5). So the first rung must come after
the longest warm-up, unless a searched key changes training during the warm-up (the learning rate, the
data, a method key the method names in its `warmup_reads`); otherwise the space is refused.
"""

from __future__ import annotations

import copy
import itertools
import math

from ..config import RunConfig, from_dict, set_key
from ..errors import UserError
from ..registry import METHODS
from .distributions import Dimension

# the searched keys that move where a warm-up ends (their extremes give the longest one)
WARMUP_LENGTH_KEYS = ("method.warmup", "method.q", "method.restarts", "schedule.epochs")


def asha_rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs at which ASHA's first bracket compares trials, ascending (Ray 2.60's _Bracket: rungs
    at grace_period * rf^k for k < int(log(max_t / grace_period) / log(rf) + 1))."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [int(grace_period * reduction_factor**k) for k in range(count)]


def longest_warmup(base: dict, base_cfg: RunConfig, dims: list[Dimension]) -> int:
    """The longest warm-up any trial of the space can have (0 for a method without one)."""
    spec = METHODS.get(base_cfg.method.name)
    if spec.warmup_epochs is None or at_onset(base_cfg):
        return 0
    varying = [d for d in dims if d.key in WARMUP_LENGTH_KEYS]
    longest = spec.warmup_epochs(base_cfg)
    for values in itertools.product(*[[v for _, v in d.extremes()] for d in varying]):
        config = copy.deepcopy(base)
        for d, v in zip(varying, values):
            set_key(config, d.key, v)
        try:
            longest = max(longest, spec.warmup_epochs(from_dict(RunConfig, config)))
        except UserError:  # a combination the run checks refuse (warm-up below q...): said by those checks, not here
            continue
    return longest


def at_onset(base_cfg: RunConfig) -> bool:
    """The warm-up ends at the onset, found while training (method.onset: plateau): no rung can be checked
    against it beforehand; a shared warm-up moves ASHA's first cut after it once known (study.asha_grace)."""
    return getattr(base_cfg.method, "onset", "clock") == "plateau"


def keys_acting_in_warmup(base_cfg: RunConfig, dims: list[Dimension]) -> list[str]:
    """The searched keys that make trials differ while they warm up: every key outside method.*, and the
    method keys its registry entry names in `warmup_reads`."""
    reads = {f"method.{k}" for k in METHODS.get(base_cfg.method.name).warmup_reads}
    keys = [d.key.split("[")[0] for d in dims]
    return sorted({k for k in keys if not k.startswith("method.") or k in reads})


def check_rungs(grace_period: int, reduction_factor: float, max_t: int, warmup: int, acting: list[str], method: str) -> None:
    """Refuse an ASHA scheduler whose first rung falls where the trials cannot differ yet."""
    if warmup == 0 or grace_period > warmup or acting:
        return
    rungs = asha_rungs(grace_period, reduction_factor, max_t)
    alike = f"{method} trains every entry alike until epoch {warmup}"
    where = f"ASHA's first rung, epoch {rungs[0]}, compares trials still in their warm-up ({alike})"
    if warmup + 1 > max_t:
        raise UserError(
            f"tune.scheduler.grace_period: {where}, and no rung fits after it within {max_t} epochs "
            "(shorter warm-ups, more epochs, or tune.scheduler.name: fifo)"
        )
    raise UserError(f"tune.scheduler.grace_period: {where}: set it to {warmup + 1} or more, or search shorter warm-ups")
