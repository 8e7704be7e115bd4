"""Study folders -> two tidy tables, without starting Ray.

A study folder holds Tune's files (the experiment state, one folder per trial with `result.json`)
and `mhss_study.json`, which `mhss-tune` writes first (metric, mode, max_t, scheduler, class names,
the base run config; study_record.py). Tune's `ExperimentAnalysis` reads them through pyarrow's
filesystems, so a local folder, an NFS mount, `s3://` and `gs://` all work, finished or interrupted.
This module is the one reader of Tune's files: it imports Ray's `ExperimentAnalysis`, never `mhss_ray.tune`.

    trials: one row per trial: study, trial_id, status (Tune's), outcome (completed, stopped early,
            errored, unfinished), error, failures (Tune's retries), node, method, the searched config (per-class noise rates as
            eps_<class>), baseline (the method of a baseline arm, `tune.baselines`; empty for searched
            trials), epochs, best/last metric, test mAP at the best epoch, checkpoint (the latest), best_checkpoint
            (the kept checkpoint with the best metric)
    epochs: one row per trial x epoch, every reported metric (a re-reported epoch keeps its last row)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from ..errors import UserError
from ..study_record import SHARED_ROW, column_name
from ..study_record import read_record as read_info

# Tune's bookkeeping columns that say nothing about the model
TUNE_COLUMNS = {
    "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id", "date", "pid",
    "time_since_restore", "iterations_since_restore", "experiment_tag", "time_this_iter_s",
}  # fmt: skip
OUTCOMES = ("completed", "stopped early", "errored", "unfinished")


@dataclass
class StudyTables:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    info: dict = field(default_factory=dict)  # study name -> its mhss_study.json

    def study(self, name: str) -> dict:
        return self.info.get(name, {})


BASELINE_COLUMN = "baseline"  # the key of a baseline arm's point, as mhss-tune writes it: the method the arm ran


def first_line_of_error(text: str | None) -> str:
    """The exception line of a Tune error trace (its last non-empty line), e.g.
    `mhss_ray.errors.TrainingDiverged: training loss became nan at epoch 2`."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _outcome(status: str, epochs: int, max_t: int | None) -> str:
    if status == "ERROR":
        return "errored"
    if status == "TERMINATED":
        return "completed" if max_t is None or epochs >= max_t else "stopped early"
    return "unfinished"  # RUNNING / PENDING / PAUSED in the saved state: the study was interrupted


def _best_checkpoint(analysis, trial, metric: str, mode: str) -> str | None:
    """The trial's kept checkpoint with the best metric (mhss-tune keeps it beside the latest)."""
    if getattr(trial, "checkpoint", None) is None:  # an interrupted study's trial before its first one: Tune would log an ERROR
        return None
    try:
        return _checkpoint_path(analysis.get_best_checkpoint(trial, metric, mode))
    except (KeyError, ValueError, AttributeError, RuntimeError):
        return None


def _checkpoint(trial) -> str | None:
    """The trial's latest checkpoint."""
    return _checkpoint_path(getattr(trial, "checkpoint", None))


def _checkpoint_path(ckpt) -> str | None:
    """A checkpoint's folder (a URI in object storage: pyarrow's path there has no scheme); for Ray
    Train trials, the Train checkpoint its pointer names."""
    if ckpt is None:
        return None
    try:
        with ckpt.filesystem.open_input_stream(f"{ckpt.path}/train_checkpoint.json") as f:
            return _uri(ckpt.filesystem, json.loads(f.readall().decode()).get("train_checkpoint") or ckpt.path)
    except (FileNotFoundError, OSError, ValueError):
        return _uri(ckpt.filesystem, ckpt.path)


def _uri(filesystem, path: str) -> str:
    """`bucket/studies/x` on an S3 or GCS filesystem -> `s3://bucket/studies/x`; local paths as they are."""
    scheme = {"s3": "s3", "gcs": "gs"}.get(getattr(filesystem, "type_name", "local"))
    return f"{scheme}://{path}" if scheme and "://" not in path else path


def read_results(trial) -> tuple[pd.DataFrame, str]:
    """A trial's result.json, every line that parses (Tune's own reader drops the whole trial for
    one bad line), and a note naming the lines that did not ('' when none)."""
    fs = trial.storage.storage_filesystem
    file = f"{trial.storage.trial_fs_path}/result.json"
    try:
        with fs.open_input_stream(file) as f:
            lines = f.readall().decode("utf-8", errors="replace").splitlines()
    except (FileNotFoundError, OSError):
        return pd.DataFrame(), ""
    rows, bad = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    note = f"result.json: {len(bad)} unreadable line{'s' if len(bad) > 1 else ''} (line {', '.join(map(str, bad[:5]))})" if bad else ""
    return (pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()), note


def _epochs_frame(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "epoch" not in df:
        return pd.DataFrame()
    keep = [c for c in df.columns if c not in TUNE_COLUMNS and not c.startswith("config/")]
    out = df[keep].copy()
    out["epoch"] = out["epoch"].astype(int)
    return out.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def _times(frame: pd.DataFrame) -> dict:
    """When the trial started (its first report less that epoch's time) and last reported, as Unix seconds
    from Tune's own result rows; none where the rows lack them."""
    if frame.empty or "timestamp" not in frame:
        return {}
    stamps = pd.to_numeric(frame["timestamp"], errors="coerce").dropna()
    if stamps.empty:
        return {}
    first = float(stamps.iloc[0]) - float(pd.to_numeric(frame.get("time_this_iter_s", pd.Series([0.0])), errors="coerce").fillna(0).iloc[0])
    return {"started": first, "ended": float(stamps.iloc[-1])}


def load_study(path: str) -> StudyTables:
    """One study folder (local path or URI) -> StudyTables."""
    from ray.tune import ExperimentAnalysis

    info = read_info(path)
    name = info.get("name") or PurePosixPath(path.rstrip("/")).name
    metric, mode = info.get("metric", "val_mAP"), info.get("mode", "max")
    max_t = info.get("max_t")
    classes = info.get("class_names", [])
    base_method = info.get("base", {}).get("method", {}).get("name", "asl")
    quiet = _DropFetchWarnings()
    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(quiet)
    try:
        analysis = ExperimentAnalysis(path if "://" in path else str(_resolve(path)))
    except json.JSONDecodeError:
        raise UserError(f"{path}: its newest experiment_state file is corrupt (truncated?), so its trials cannot be read") from None
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(f"{path}: holds no Tune study ({str(exc).splitlines()[0][:160]})") from None
    finally:
        logging.getLogger("ray.tune.analysis.experiment_analysis").removeFilter(quiet)
    trial_rows, epoch_frames = [], []
    for trial in analysis.trials:
        frame, damage = read_results(trial)
        epochs = _epochs_frame(frame)
        row = {"study": name, "trial_id": trial.trial_id, "status": trial.status, **_times(frame)}
        n = int(epochs["epoch"].max()) if not epochs.empty else 0
        n = max(n, int((trial.last_result or {}).get("epoch") or 0))  # Tune's state knows epochs a damaged file lost
        row["damaged"] = damage
        row["outcome"] = _outcome(trial.status, n, max_t)
        row["error"] = first_line_of_error(trial.get_error()) if trial.status == "ERROR" else ""
        row["failures"] = int(trial.run_metadata.num_failures)  # retries after a lost node or a crash
        last = epochs.iloc[-1] if not epochs.empty else {}
        row["node"] = str(last.get("hostname", "")) if len(last) else ""
        row["node_ip"] = str(last.get("node_ip", "")) if len(last) else ""
        config = dict(trial.config)
        if config.get(BASELINE_COLUMN):  # a baseline arm: whatever Tune filled in for the searched keys is unused
            config = {BASELINE_COLUMN: config[BASELINE_COLUMN]}
        row["method"] = config.get(BASELINE_COLUMN) or config.get("method.name", base_method)
        row.update({column_name(k, classes): v for k, v in config.items()})
        row["epochs"] = n
        row["epochs_shared"] = int(epochs[SHARED_ROW].fillna(False).astype(bool).sum()) if SHARED_ROW in epochs else 0
        if not epochs.empty and metric in epochs:
            values = epochs[metric].astype(float)
            best = int(values.idxmax() if mode == "max" else values.idxmin())
            row[f"best_{metric}"] = float(values.iloc[best])
            row["best_epoch"] = int(epochs["epoch"].iloc[best])
            row[f"last_{metric}"] = float(values.iloc[-1])
            if "test_mAP" in epochs:
                row["test_mAP_at_best"] = float(epochs["test_mAP"].iloc[best])
        row["checkpoint"] = _checkpoint(trial)
        row["best_checkpoint"] = _best_checkpoint(analysis, trial, metric, mode) or row["checkpoint"]
        trial_rows.append(row)
        if not epochs.empty:
            epochs.insert(0, "trial_id", trial.trial_id)
            epochs.insert(0, "study", name)
            epoch_frames.append(epochs)
    trials = pd.DataFrame(trial_rows)
    epochs_df = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else pd.DataFrame(columns=["study", "trial_id", "epoch"])
    trials = at_common_epoch(trials, epochs_df, metric)
    info = dict(info, name=name, metric=metric, mode=mode)
    return StudyTables(trials, epochs_df, {name: info})


def at_common_epoch(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each trial's metric (and test mAP) at `common_epoch`, the last epoch every searched trial reached:
    a trial ASHA stopped at epoch 5 and one that ran 9 are compared at equal training there, where their
    best values mix what the knobs did with how long they trained."""
    if trials.empty or metric not in epochs:
        return trials
    searched = trials[~is_arm(trials)]
    reached = searched.loc[searched["epochs"] > 0, "epochs"]
    if reached.empty:
        return trials
    common = int(reached.min())
    at = epochs[epochs["epoch"] == common].drop_duplicates("trial_id", keep="last").set_index("trial_id")
    trials = trials.copy()
    trials["common_epoch"] = common
    trials[f"{metric}_at_common"] = trials["trial_id"].map(at[metric]).astype(float)
    if "test_mAP" in at:
        trials["test_mAP_at_common"] = trials["trial_id"].map(at["test_mAP"]).astype(float)
    return trials


class _DropFetchWarnings(logging.Filter):
    """ExperimentAnalysis warns (with a repr of the trial) for a result.json it cannot parse;
    read_results reads those files itself and the tables flag the damage."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to fetch metrics" not in record.getMessage()


def _resolve(path: str):
    from pathlib import Path

    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise UserError(f"{path}: no such study folder")
    return p


def study_paths(value: str) -> list[str]:
    """Comma-separated study paths (the notebook's MHSS_STUDY). A relative path is read from where the user
    started (PWD: a notebook's kernel runs in the notebook's folder, but inherits the shell's PWD), else from
    the repository; URIs and absolute paths as they are."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    starts = [Path(os.environ["PWD"])] if os.environ.get("PWD") else []
    out = []
    for path in (p.strip() for p in value.split(",") if p.strip()):
        if "://" in path or Path(path).expanduser().is_absolute():
            out.append(path)
            continue
        found = [base / path for base in (*starts, repo) if (base / path).is_dir()]
        out.append(str(found[0] if found else (starts or [Path.cwd()])[0] / path))
    return out


def load_studies(paths: list[str]) -> StudyTables:
    """Several studies (e.g. from different clusters) in one pair of tables, told apart by `study`."""
    parts = [load_study(p) for p in paths]
    names = [next(iter(p.info)) for p in parts]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UserError(f"two studies are named {sorted(dupes)[0]!r}; give each a different --name when running them")
    trials = pd.concat([p.trials for p in parts], ignore_index=True)
    epochs = pd.concat([p.epochs for p in parts], ignore_index=True)
    info = {k: v for p in parts for k, v in p.info.items()}
    return StudyTables(trials, epochs, info)


def is_arm(trials: pd.DataFrame) -> pd.Series:
    """Which rows are baseline arms (`tune.baselines`): trials that ran a baseline, not a point of the space."""
    if BASELINE_COLUMN not in trials:
        return pd.Series(False, index=trials.index)
    return trials[BASELINE_COLUMN].fillna("").astype(str) != ""


def baseline_arms(tables: StudyTables, name: str) -> pd.DataFrame:
    df = tables.trials[tables.trials["study"] == name]
    return df[is_arm(df)]


def best_trials(tables: StudyTables, top: int = 5) -> pd.DataFrame:
    """The best searched trials of every study by its own metric (rows sorted best first; baseline arms are not candidates)."""
    out = []
    for name, info in tables.info.items():
        df = tables.trials[tables.trials["study"] == name]
        df = df[~is_arm(df)]
        col = f"best_{info['metric']}"
        if col not in df:
            continue
        out.append(df.dropna(subset=[col]).sort_values(col, ascending=info["mode"] == "min").head(top))
    return pd.concat(out, ignore_index=True) if out else tables.trials.head(0)


def epoch_budget(tables: StudyTables, name: str) -> dict:
    """Epochs the study's trials ran (with the warm-up rows they took from a shared warm-up) against every
    trial running max_t epochs (what early stopping saved), and the epochs trained: the shared rows once,
    in the prefix run."""
    df = tables.trials[tables.trials["study"] == name]
    info = tables.study(name)
    max_t = info.get("max_t")
    run = int(df["epochs"].sum())
    shared = int(df["epochs_shared"].sum()) if "epochs_shared" in df else 0
    budget = {"epochs_run": run, "epochs_trained": run - shared + (int(info.get("shared_warmup_epochs") or 0) if shared else 0)}
    if not max_t:
        return budget
    full = int(len(df) * max_t)
    return {**budget, "epochs_without_stopping": full, "saved_share": 1 - budget["epochs_trained"] / full if full else np.nan}
