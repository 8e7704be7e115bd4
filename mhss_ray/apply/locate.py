"""A trained run to use: an `mhss-train` run folder, or a trial of an `mhss-tune` study (the best one
by the study's metric, or one named by its trial id); its config and checkpoint, loaded into a Trainer
(the whole run: mhss-audit) or an Evaluator (its networks and data: mhss-predict)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, from_dict
from ..errors import UserError
from ..train.checkpoint import CHECKPOINT_FILE, load_checkpoint
from ..train.evaluator import Evaluator
from ..train.loop import Trainer


@dataclass
class TrainedRun:
    source: str  # what the user named: the run folder, or the study folder and trial
    config: RunConfig
    state: dict  # the checkpoint's state (Trainer.state_dict)

    def trainer(self) -> Trainer:
        trainer = Trainer(self.config)
        trainer.load_state_dict(self.state)
        return trainer

    def evaluator(self) -> Evaluator:
        return Evaluator.of_checkpoint(self.config, self.state)


def _from_checkpoint_folder(folder: str, source: str) -> TrainedRun:
    state = load_checkpoint(folder)
    try:
        cfg = from_dict(RunConfig, state["config"])
    except UserError as exc:
        raise UserError(f"{source}: its checkpoint's config is no longer valid ({exc})") from None
    return TrainedRun(source, cfg, state)


def _download(uri: str, into: Path) -> str:
    """A checkpoint folder in object storage, copied to a local temporary folder."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(f"{inner.rstrip('/')}/{CHECKPOINT_FILE}") as f, open(into / CHECKPOINT_FILE, "wb") as out:
        while chunk := f.read(1 << 24):
            out.write(chunk)
    return str(into)


def locate(source: str, trial: str = "best") -> TrainedRun:
    """`source`: a run folder (holds checkpoint/checkpoint.pt) or a study folder (local or a storage URI)."""
    run_checkpoint = Path(source) / "checkpoint"
    if "://" not in source and (run_checkpoint / CHECKPOINT_FILE).is_file():
        if trial != "best":
            raise UserError(f"--trial {trial}: {source} is a run folder, not a study (it has one run)")
        return _from_checkpoint_folder(str(run_checkpoint), source)
    if "://" not in source and not Path(source).is_dir():
        raise UserError(f"--from {source}: no such folder")
    from ..analysis.load import best_trials, load_study

    tables = load_study(source)
    name = next(iter(tables.info), None)
    trials = tables.trials
    if trials.empty:
        raise UserError(f"--from {source}: neither a run folder (no checkpoint/{CHECKPOINT_FILE}) nor a study with trials")
    if trial == "best":
        best = best_trials(tables, top=1)
        if best.empty:
            raise UserError(f"--from {source}: no trial of study {name} reported its metric yet")
        row = trials[trials["trial_id"] == best.iloc[0]["trial_id"]].iloc[0]
    else:
        match = trials[trials["trial_id"] == trial]
        if match.empty:
            raise UserError(f"--trial {trial}: no such trial in {source} (trials: {', '.join(trials['trial_id'].head(8))})")
        row = match.iloc[0]
    # the trial's best epoch (studies analysed before it was recorded: the latest)
    checkpoint = next((c for c in (row.get("best_checkpoint"), row.get("checkpoint")) if isinstance(c, str) and c), None)
    if checkpoint is None:
        raise UserError(f"--from {source}: trial {row['trial_id']} has no checkpoint")
    where = f"{source} trial {row['trial_id']}"
    if "://" in checkpoint:
        with tempfile.TemporaryDirectory(prefix="mhss-checkpoint-") as tmp:
            return _from_checkpoint_folder(_download(checkpoint, Path(tmp)), where)
    return _from_checkpoint_folder(checkpoint, where)
