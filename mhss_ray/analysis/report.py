"""`mhss-analyze`'s output folder: the two tables as Parquet, the plots, a summary and the best
configuration of each study as a ready-to-run `mhss-train` YAML. Written into a temporary folder
and moved into place at the end, so a failed analysis leaves nothing half-written."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd
import yaml

from ..config import RunConfig, apply_point, from_dict
from ..outputs import FolderKind, check_not_reading, check_replaceable, check_writable, remove_owned, user_mode, write_marker
from ..registry import METHODS
from ..study_record import SHARED_ROW
from .load import BASELINE_COLUMN, OUTCOMES, StudyTables, baseline_arms, best_trials, column_name, epoch_budget
from .plots import save_all


def shown_config() -> list[str]:
    """The config columns of the summary's tables: the keys the registered methods label in plots
    (alpha, theta, the warm-up, ...), then method.q and optim.lr; a column only where a study searched it."""
    keys = [k for spec in METHODS.specs() for k in spec.labels]
    return list(dict.fromkeys([*keys, "method.q", "optim.lr"]))


def best_config(tables: StudyTables, name: str) -> dict | None:
    """The full run config of the study's best trial: the study's base config plus its point."""
    info = tables.study(name)
    best = best_trials(tables, top=1_000_000)
    best = best[best["study"] == name]
    if best.empty or "base" not in info:
        return None
    trial_id = best.iloc[0]["trial_id"]
    point = _points(tables, name)[trial_id]
    cfg = from_dict(RunConfig, apply_point(info["base"], point))
    epochs = tables.epochs[tables.epochs["trial_id"] == trial_id]
    if cfg.runtime.threads is None and "torch_threads" in epochs and epochs["torch_threads"].notna().any():
        # the trial's own thread count: with another one the float sums, and so the numbers, differ
        cfg.runtime.threads = int(epochs["torch_threads"].dropna().iloc[-1])
    if cfg.data.cache_dir not in (None, "auto", "off") and PurePosixPath(cfg.data.cache_dir).name == "decode_cache":
        cfg.data.cache_dir = "auto"  # what `auto` became on the machine the study ran on: auto again wherever it runs next
    return cfg.to_dict()


def _points(tables: StudyTables, name: str) -> dict[str, dict]:
    """trial id -> its sampled point, with the searched keys as Tune named them."""
    info = tables.study(name)
    keys = info.get("searched", [])
    classes = info.get("class_names", [])
    trials = tables.trials[tables.trials["study"] == name]
    out = {}
    for _, row in trials.iterrows():
        point = {}
        for key in keys:
            col = column_name(key, classes)
            if col in row and not (isinstance(row[col], float) and math.isnan(row[col])):
                value = row[col]
                point[key] = value.item() if hasattr(value, "item") else value
        out[row["trial_id"]] = point
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table(df: pd.DataFrame, columns: list[str], empty: str = "None.") -> list[str]:
    """A markdown table of `columns` (those with a value); `empty`, a sentence, when no row or column has one."""
    columns = [c for c in columns if c in df and df[c].notna().any()]  # unsearched keys stay out
    if df.empty or not columns:
        return [empty]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df[columns].itertuples(index=False)]
    return lines


def _gains(tables: StudyTables, name: str, best: pd.DataFrame) -> list[str]:
    """The baseline arms and what the best searched trial gained over each (by the study's metric, and in test mAP at the best epoch)."""
    arms = baseline_arms(tables, name)
    if arms.empty:
        return []
    info = tables.study(name)
    col, sign = f"best_{info['metric']}", 1 if info["mode"] == "max" else -1
    arms = arms.copy()
    top = best.iloc[0] if not best.empty else None
    if top is not None and col in arms:
        arms[f"gain in {info['metric']}"] = sign * (float(top[col]) - arms[col].astype(float))
    if top is not None and "test_mAP_at_best" in arms and pd.notna(top.get("test_mAP_at_best")):
        arms["gain in test mAP"] = float(top["test_mAP_at_best"]) - arms["test_mAP_at_best"].astype(float)
    lines = ["", "Baseline arms (each run once on the base config; gain = the best trial's figure minus the arm's):", ""]
    lines += _table(
        arms,
        [BASELINE_COLUMN, "trial_id", "outcome", col, "best_epoch", "test_mAP_at_best", f"gain in {info['metric']}", "gain in test mAP"],
    )
    if top is not None and col in arms:
        worst_gap = min(sign * (float(top[col]) - float(v)) for v in arms[col].dropna())
        verdict = "beats every baseline arm" if worst_gap > 0 else "does not beat every baseline arm"
        lines += ["", f"The best trial ({top['trial_id']}) {verdict} in `{info['metric']}` (smallest gain {worst_gap:+.4g})."]
    return lines


def summary_markdown(tables: StudyTables, config_files: dict[str, str], plots: list[Path]) -> str:
    lines = ["# Study analysis", ""]
    for name, info in tables.info.items():
        trials = tables.trials[tables.trials["study"] == name]
        metric = info["metric"]
        counts = trials["outcome"].value_counts()
        outcome_text = ", ".join(f"{int(counts.get(o, 0))} {o}" for o in OUTCOMES)
        lines += [
            f"## {name}",
            "",
            f"{len(trials)} trials: {outcome_text}. Metric `{metric}` ({info['mode']}), max_t {info.get('max_t', '?')} epochs.",
        ]
        budget = epoch_budget(tables, name)
        unfinished = int(counts.get("unfinished", 0))
        if unfinished:
            lines.append(
                f"The study was interrupted ({unfinished} trials unfinished, {budget['epochs_run']} epochs run); `mhss-tune "
                "--resume` continues it."
            )
        elif info.get("scheduler", {}).get("name") == "fifo":
            lines.append(f"No early stopping (FIFO): {budget['epochs_run']} epochs run.")
        elif "epochs_without_stopping" in budget:
            saver = "early stopping and the shared warm-up" if budget["epochs_trained"] != budget["epochs_run"] else "early stopping"
            lines.append(
                f"Epoch budget: {budget['epochs_trained']} epochs trained of the {budget['epochs_without_stopping']} that every trial "
                f"running to max_t on its own would have taken: {saver} saved {budget['saved_share']:.0%}."
            )
        if budget["epochs_trained"] != budget["epochs_run"]:
            lines.append(
                f"The trials report {budget['epochs_run']} epochs; their warm-ups were trained once, by a "
                f"{info.get('shared_warmup_epochs')}-epoch prefix run (rows marked `{SHARED_ROW}`)."
            )
        best = best_trials(tables, top=5)
        best = best[best["study"] == name]
        shown = [
            "trial_id",
            "method",
            "outcome",
            f"best_{metric}",
            "best_epoch",
            "test_mAP_at_best",
            f"{metric}_at_common",
            "epochs",
            *[c for c in shown_config() if c in trials],
        ]
        shown = [c for c in shown if c in trials]
        lines += ["", "Best trials:", "", *_table(best, shown, f"None: no trial reported `{metric}` (see the errored trials below).")]
        if "common_epoch" in trials:
            lines += [
                "",
                f"`{metric}_at_common`: each trial at epoch {int(trials['common_epoch'].iloc[0])}, the last one every searched trial "
                "reached. Trials stopped early (ASHA) trained fewer epochs, so their best values are not on an equal footing with "
                "the others'; this column is.",
            ]
        per_method = best_trials(StudyTables(trials, tables.epochs, {name: info}), top=1_000_000).groupby("method", sort=False).head(1)
        lines += [
            "",
            "Best trial per method:",
            "",
            *_table(
                per_method, ["method", "trial_id", f"best_{metric}", "best_epoch", "test_mAP_at_best"], "None: no trial reported an epoch."
            ),
        ]
        lines += _gains(tables, name, best)
        errored = trials[trials["outcome"] == "errored"]
        if not errored.empty:
            lines += ["", "Errored trials:", "", *_table(errored, ["trial_id", "epochs", "failures", "error"])]
        damaged = trials[trials["damaged"].fillna("") != ""] if "damaged" in trials else trials.head(0)
        if not damaged.empty:
            lines += [
                "",
                "Damaged result files (every readable epoch is kept; the rest are missing from the tables):",
                "",
                *_table(damaged, ["trial_id", "epochs", "damaged"]),
            ]
        if name in config_files:
            lines += [
                "",
                f"Best configuration: `{config_files[name]}`; run it alone with",
                "",
                "```bash",
                f"mhss-train --config {config_files[name]}",
                "```",
            ]
        lines += ["", "Plots: " + ", ".join(f"`{p.name}`" for p in plots if p.name.startswith(f"{name}_")), ""]
    lines += ["Tables: `trials.parquet` (one row per trial), `epochs.parquet` (one row per trial and epoch).", ""]
    return "\n".join(lines)


# Everything an analysis writes; a later analysis into the same --out replaces these and nothing else.
ANALYSIS = FolderKind(
    "mhss-analyze", ".mhss-analysis", (".mhss-analysis", "trials.parquet", "epochs.parquet", "summary.md", "*.png", "best_config_*.yaml")
)


def check_output(out: Path, studies: list[str]) -> None:
    """Before any study is read: `out` is writable, is not (and does not hold, nor lie in) a study,
    and is either new, empty, or an earlier analysis holding only what mhss-analyze wrote."""
    check_writable(out, "--out")
    check_not_reading(out, {f"study folder{'' if len(studies) == 1 else f' #{i + 1}'}": s for i, s in enumerate(studies)}, "mhss-analyze")
    check_replaceable(out, ANALYSIS, "--out")


def write_report(tables: StudyTables, out: Path) -> list[Path]:
    """Write everything into `out` (replacing an earlier analysis there); returns the files written.
    The caller has run check_output."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tmp.chmod(user_mode())  # mkdtemp makes it private; colleagues on shared storage read it too
        write_marker(tmp, ANALYSIS)
        tables.trials.to_parquet(tmp / "trials.parquet", index=False)
        tables.epochs.to_parquet(tmp / "epochs.parquet", index=False)
        plots = save_all(tables, tmp)
        configs = {}
        for name in tables.info:
            cfg = best_config(tables, name)
            if cfg is not None:
                file = f"best_config_{name}.yaml"
                (tmp / file).write_text(
                    f"# The best trial of study {name}, as a run config for mhss-train\n" + yaml.safe_dump(cfg, sort_keys=False)
                )
                configs[name] = str(out / file)
        (tmp / "summary.md").write_text(summary_markdown(tables, configs, plots))
        if out.exists():
            remove_owned(out, ANALYSIS)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())
