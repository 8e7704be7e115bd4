"""The optimiser and its learning-rate schedule (one pair per round of method.restarts)."""

from __future__ import annotations

import torch

from ..config import OptimConfig


def build_optimizer(cfg: OptimConfig, params, fused: bool = False) -> torch.optim.Optimizer:
    """`fused`: one kernel updates every parameter (the same arithmetic, far fewer GPU launches)."""
    kw = {"fused": True} if fused else {}
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9, nesterov=True, **kw)


def build_scheduler(cfg: OptimConfig, optimizer, steps_per_epoch: int, epochs: int):
    total = steps_per_epoch * epochs
    if cfg.scheduler == "onecycle":
        # torch divides by the warm-up phase's length in steps (pct_start * total - 1): exactly 0 on
        # short runs (pct 0.2 of 5 steps). Keep both phases at least half a step long.
        pct = min(max(cfg.pct_start, 1.5 / total), 1 - 0.5 / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
