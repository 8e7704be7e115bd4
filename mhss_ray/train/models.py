"""Networks from timm (any model name), optionally from a local pretrained file, and their EMA."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.utils import ModelEmaV3

from ..config import ModelConfig
from ..errors import UserError


def create_network(cfg: ModelConfig, num_classes: int, in_chans: int) -> torch.nn.Module:
    if not timm.is_model(cfg.name):
        raise UserError(f"model.name: unknown timm model {cfg.name!r}")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=cfg.drop_rate)
    if cfg.pretrained_path:
        path = Path(cfg.pretrained_path)
        if not path.is_file():
            raise UserError(f"model.pretrained_path: {path}: no such file")
        # timm adapts the first conv to in_chans and drops a classifier of another size.
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    try:
        return timm.create_model(cfg.name, **kwargs)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        if not cfg.pretrained_path:
            raise
        raise UserError(
            f"model.pretrained_path: {cfg.pretrained_path}: cannot load into {cfg.name} ({str(exc).splitlines()[0][:200]})"
        ) from None


def create_ema(net: torch.nn.Module, decay: float) -> ModelEmaV3:
    return ModelEmaV3(net, decay=decay)


def check_input_size(net: torch.nn.Module, name: str, in_chans: int, size: int, device: torch.device) -> None:
    """One image through the network before anything is written: models with a fixed input size
    (ViTs: 224 px) fail here with one line instead of an AssertionError in the first batch."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_chans, size, size, device=device))
    except (AssertionError, RuntimeError, ValueError) as exc:
        wants = (getattr(net, "pretrained_cfg", None) or {}).get("input_size")
        hint = f"it takes {wants[-1]} px" if wants else "its input size differs"
        reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"data.image_size: {size} px images do not fit model.name {name} ({hint}: {reason})") from None
    finally:
        net.train(was_training)
