"""Checkpoints: one file holding everything a resumed run needs, loaded with weights_only=True."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import torch

from ..errors import UserError

CHECKPOINT_FILE = "checkpoint.pt"
# What every checkpoint the trainer writes holds (Trainer.state_dict); anything else is not ours.
STATE_KEYS = ("epoch", "config", "networks", "emas", "optimizer", "scheduler", "method", "rng")


def save_checkpoint(folder: str | Path, state: dict) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint.pt behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    try:
        torch.save(state, tmp)
    except RuntimeError as exc:  # torch's writer reports a full disk as "file write failed", without errno
        tmp.unlink(missing_ok=True)
        if "write" not in str(exc):
            raise
        raise OSError(errno.ENOSPC, "no space left on device (or the write failed)", str(tmp)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: str | Path) -> dict:
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: say which file, not a traceback
        raise UserError(f"{path}: unreadable checkpoint ({exc.__class__.__name__})") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path}: not a checkpoint of an mhss-ray run (no {missing[0]!r}); it cannot be resumed")
    return state


@contextlib.contextmanager
def fitting(what: str):
    """Loading a checkpoint into the run built for it: one that does not fit (another model, method or
    dataset) is one line naming `what` must fit, with torch's first line."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"checkpoint: does not fit this run's {what} ({first})") from None
