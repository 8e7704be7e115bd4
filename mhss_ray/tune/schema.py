"""The `tune:` block of a search-space file: how trials are scheduled, searched, resourced and stored.

    tune:
      num_samples: 8
      scheduler: {name: asha, grace_period: 3}
      resources: {workers: 1, gpu_per_worker: 0.25}

Validated like the run config (config.from_dict: unknown keys, types, ranges, with the key path in
the message); `check_tune` adds the rules that span keys or need the base run config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import RunConfig, num
from ..yaml_files import show_value
from ..errors import UserError
from ..registry import DATASETS, METHODS
from .trackers import check_trackers

METRICS = ("val_mAP", "test_mAP", "val_f1_micro", "val_f1_macro", "train_loss")
WEIGHTED_METRICS = (
    "val_F2_CIW",
    "val_F1_normal",
    "test_F2_CIW",
    "test_F1_normal",
)  # datasets with class weights (Sewer-ML), or data.class_weights given
DRIVER_MEMORY_BYTES = 256 * 2**20  # a Ray Train trial's driver process (it imports Ray and torch)


@dataclass
class SchedulerSection:
    name: Literal["asha", "fifo"] = "asha"
    max_t: Optional[int] = num(None, 1, 100_000)  # epochs; default: the base config's schedule.epochs
    grace_period: int = num(1, 1, 100_000)
    reduction_factor: float = num(3.0, 1.01, 100.0)
    brackets: int = num(1, 1, 10)


@dataclass
class SearchAlgSection:
    name: Literal["hyperopt", "random"] = "hyperopt"
    points_to_evaluate: Optional[list] = None  # [{search key: value, ...}, ...]
    n_initial_points: int = num(20, 1, 100_000)  # HyperOpt's random start
    seed: Optional[int] = num(None, 0, 2**31 - 1)


@dataclass
class ResourcesSection:
    workers: int = num(1, 0, 1024)  # Ray Train workers per trial; 0: the loop runs inside the Tune trial (quick CPU studies)
    cpus_per_worker: float = num(1.0, 0.1, 1024.0)
    gpu_per_worker: float = num(0.0, 0.0, 8.0)  # a fraction (e.g. 0.25) only with one worker

    def trial(self) -> dict:
        """Resources one trial holds while it trains: its own process (workers: 0) or its workers."""
        n = max(self.workers, 1)
        return {"CPU": n * self.cpus_per_worker, "GPU": n * self.gpu_per_worker}

    def driver(self) -> dict:
        """What Tune reserves for the trial's own process. With Ray Train that process only waits
        on its workers, so it holds no CPU (a CPU there can deadlock a small cluster: every CPU held
        by waiting drivers, none left for their workers), only the memory it really uses (Ray
        wants a non-empty reservation)."""
        if self.workers == 0:
            return {"cpu": self.cpus_per_worker, "gpu": self.gpu_per_worker}
        return {"cpu": 0, "gpu": 0, "memory": DRIVER_MEMORY_BYTES}

    def trials_per_gpu(self) -> int | None:
        g = self.trial()["GPU"]
        if g <= 0:
            return None
        return max(1, math.floor(1 / g + 1e-9)) if g < 1 else 1


@dataclass
class TuneSection:
    metric: str = "val_mAP"
    mode: Literal["max", "min"] = "max"
    num_samples: int = num(8, 1, 1_000_000)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    search_alg: SearchAlgSection = field(default_factory=SearchAlgSection)
    max_concurrent_trials: int = num(2, 1, 100_000)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    storage_path: str = "runs/studies"  # a local folder, an NFS mount, s3://... or gs://...
    name: Optional[str] = None  # default: the space file's name
    max_failures: int = num(1, -1, 1000)  # retries of a failed trial (-1: forever)
    baselines: list = field(default_factory=list)  # methods run once on the base config beside the searched trials
    callbacks: list = field(default_factory=list)  # experiment trackers: mlflow, wandb (tune/trackers.py)
    # auto: the searched trials' identical warm-up epochs train once, in a prefix run they fork from (tune/warmup_share.py)
    share_warmup: Literal["auto", "off"] = "auto"


def check_name(name: str, key: str) -> str:
    """A study name is one folder name inside the storage path: never a path of its own."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise UserError(f"{key}: expected a plain folder name (no '/', '..' or spaces around it), got {show_value(name)}")
    return name


def metrics_of(cfg: RunConfig) -> tuple[str, ...]:
    """The metrics every trial of this base config reports (a dataset with class weights adds F2-CIW and F1-Normal)."""
    weighted = DATASETS.get(cfg.data.name).weighted_metrics or cfg.data.class_weights
    return METRICS + (WEIGHTED_METRICS if weighted else ())


def check_tune(t: TuneSection, cfg: RunConfig) -> None:
    if t.name is not None:
        check_name(t.name, "tune.name")
    for i, arm in enumerate(t.baselines):
        METHODS.get(arm, f"tune.baselines[{i}]")
        if arm in t.baselines[:i]:
            raise UserError(f"tune.baselines[{i}]: {arm} is listed twice (each arm runs once)")
    check_trackers(t.callbacks)
    max_t = t.scheduler.max_t or cfg.schedule.epochs
    if t.scheduler.name == "asha" and t.scheduler.grace_period > max_t:
        raise UserError(f"tune.scheduler.grace_period: {t.scheduler.grace_period} is beyond max_t {max_t}: ASHA would never compare trials")
    metrics = metrics_of(cfg)
    if t.metric not in metrics:
        raise UserError(f"tune.metric: expected one of {', '.join(metrics)}, got {show_value(t.metric)}")
    r = t.resources
    g = r.gpu_per_worker
    if r.workers > 1 and g > 0 and (g < 1 or not float(g).is_integer()):
        raise UserError(
            f"tune.resources.gpu_per_worker: {g:g} GPUs per worker with {r.workers} workers; "
            "several workers need whole GPUs (fractions only with workers: 0 or 1)"
        )
    if g > 1 and not float(g).is_integer():
        raise UserError(f"tune.resources.gpu_per_worker: expected a fraction <= 1 or a whole number, got {g:g}")
