"""Room on the disk for what a run or a study writes.

Checked before anything is written (a checkpoint is the big file: every network's weights, the
optimiser's moments, the EMA copies), and, when a disk fills anyway (another process took the
space), said in one line that names the folder, the space needed and how to continue.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .errors import UserError

MB = 1e6
# What a study writes beside a trial's checkpoint (Tune's state, result rows, error files): kept free, so
# that a study stopped by its disk can still save the state --resume reads
STATE_MARGIN = 64 * 1_000_000
# Optimiser state kept per weight: Adam's two moments, SGD's momentum buffer
MOMENTS = {"adam": 2, "adamw": 2, "sgd": 1}


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _usage(folder: str | Path):
    """The disk usage of `folder`, or, while it does not exist, of its nearest existing parent."""
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path)


def free_bytes(folder: str | Path) -> int:
    return _usage(folder).free


def total_bytes(folder: str | Path) -> int:
    return _usage(folder).total


def checkpoint_bytes(cfg) -> int:
    """About how large one checkpoint of a run of `cfg` is, from the network built without memory
    (torch's meta device: no weights allocated, nothing downloaded)."""
    import timm
    import torch

    from .registry import METHODS

    with torch.device("meta"):
        net = timm.create_model(cfg.model.name, pretrained=False, num_classes=20, in_chans=max(3, len(cfg.data.bands or [])))
    weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    copies = 1 + MOMENTS.get(cfg.optim.name, 2) + (1 if cfg.model.ema else 0)
    return int(weights * copies * METHODS.get(cfg.method.name).num_networks * 1.05 + MB)


def check_room(folder: str | Path, need: int, key: str, what: str) -> None:
    """UserError naming `key folder` unless its disk has `need` bytes free (a pseudo filesystem such as
    /proc reports no size at all: left to the write itself to refuse)."""
    free = free_bytes(folder)
    if free < need and total_bytes(folder) > 0:
        raise UserError(
            f"{key} {folder}: {free / MB:.0f} MB free on its disk, {what} needs about {need / MB:.0f} MB; "
            "free some space or choose another folder"
        )


def check_storage_room(folder: str | Path, checkpoint: int) -> None:
    """In a trial, before its checkpoint goes to the study folder: a full disk (OSError ENOSPC) while
    there is still room for Tune's own files."""
    free = free_bytes(folder)
    if free < checkpoint + STATE_MARGIN:
        raise OSError(
            errno.ENOSPC, f"No space left on device for a checkpoint of {checkpoint / MB:.0f} MB ({free / MB:.0f} MB free)", str(folder)
        )


def disk_full_line(key: str, folder: str | Path, need: int, then: str) -> str:
    """The one line said when a write ran out of space: where, how much, and the command that continues."""
    return (
        f"{key} {folder}: no space left on its disk ({free_bytes(folder) / MB:.0f} MB free, a checkpoint needs about "
        f"{need / MB:.0f} MB); free some space, then: {then}"
    )
