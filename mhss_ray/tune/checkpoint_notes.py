"""What a trial's checkpoint folder carries beside its weights, so that a resume loses no epoch's row.

- `reported.json`: every row the trial reported up to this checkpoint, the checkpoint's own epoch
  last (a few kB per epoch). Written by the trial with each checkpoint.
- `restored_as.json`: written only by `mhss-tune --resume` into a checkpoint it put in place of one
  that Tune deleted before saving its state (resume_repair.repair_checkpoints). It holds the epoch Tune's
  state believes this checkpoint is at; the copy may be newer, and the rows of the epochs in between
  may never have reached result.json. The restored trial reports them again from `reported.json`
  (a Ray Train trial: from Train's own run state), so the tables hold every epoch and Tune's
  iteration count stays equal to the epoch.
"""

from __future__ import annotations

import json
import os

REPORTED_FILE = "reported.json"
RESTORED_AS_FILE = "restored_as.json"


def write_reported(folder: str, rows: list[dict]) -> None:
    from ray.air._internal.json import SafeFallbackEncoder  # the encoder Tune writes result.json with

    with open(os.path.join(folder, REPORTED_FILE), "w") as f:
        json.dump(rows, f, cls=SafeFallbackEncoder)


def read_reported(folder: str) -> list[dict]:
    """The rows saved with a checkpoint; [] for one written before they were saved."""
    try:
        with open(os.path.join(folder, REPORTED_FILE)) as f:
            rows = json.load(f)
    except (FileNotFoundError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def write_restored_as(fs, folder: str, epoch: int) -> None:
    """`fs`/`folder`: a pyarrow filesystem and the checkpoint folder on it (a bucket has no local path)."""
    with fs.open_output_stream(f"{folder.rstrip('/')}/{RESTORED_AS_FILE}") as f:
        f.write(json.dumps({"epoch": int(epoch)}).encode())


def restored_as(folder: str) -> int | None:
    """The epoch Tune's state believes this checkpoint is at, when --resume put it in place; else None."""
    try:
        with open(os.path.join(folder, RESTORED_AS_FILE)) as f:
            epoch = json.load(f).get("epoch")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None


def rows_to_report_again(folder: str, checkpoint_epoch: int) -> list[dict]:
    """The saved rows of the epochs after the one Tune's state knows, up to the checkpoint's own."""
    known = restored_as(folder)
    if known is None:
        return []
    return [r for r in read_reported(folder) if isinstance(r.get("epoch"), int) and known < r["epoch"] <= checkpoint_epoch]
