"""Networks from timm (any model name), optionally from a local pretrained file, and their EMA."""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
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
        with warnings.catch_warnings(), quiet_logger("timm"):
            # torch's note on a file pickled with another protocol and timm's on keys it skipped: stderr lines
            # before our one line (the coverage check below says what matters about the file)
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            net = timm.create_model(cfg.name, **kwargs)
            if cfg.pretrained_path:
                check_pretrained_covers(net, cfg)
            return net
    except (RuntimeError, OSError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        if not cfg.pretrained_path:
            raise
        raise UserError(
            f"model.pretrained_path: {cfg.pretrained_path}: cannot load into {cfg.name} ({str(exc).splitlines()[0][:200]})"
        ) from None


@contextlib.contextmanager
def quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_pretrained_covers(net: torch.nn.Module, cfg: ModelConfig) -> None:
    """timm loads a pretrained file leniently (it adapts the stem and drops a classifier of another size): a
    file of another network would leave every layer at its random start, silently. Every weight but the
    classifier's must be in the file."""
    from timm.models import load_state_dict

    held = load_state_dict(str(cfg.pretrained_path), device="cpu", weights_only=True)
    classifier = net.pretrained_cfg.get("classifier") or ""
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    wanted = [
        k for k in net.state_dict() if not k.endswith("num_batches_tracked") and not any(c and k.startswith(c + ".") for c in classifiers)
    ]
    missing = [k for k in wanted if k not in held]
    if missing:
        raise UserError(
            f"model.pretrained_path: {cfg.pretrained_path}: holds {len(wanted) - len(missing)} of the {len(wanted)} weights of "
            f"{cfg.name} below its classifier (missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
            "a file of another network?"
        )


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
