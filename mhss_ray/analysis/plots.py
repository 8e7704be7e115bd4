"""The plots of a study. Each function draws one figure for one study from the tidy tables and
returns it (a notebook shows it inline); `save_all` writes them all as PNG and returns the paths.
The backend is the caller's choice: `mhss-analyze` uses Agg, which needs no display."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..registry import METHODS
from .importance import MIN_TRIALS, features, param_importance
from .load import BASELINE_COLUMN, StudyTables, is_arm

OUTCOME_MARKERS = {"completed": "o", "stopped early": "X", "errored": "s", "unfinished": "D"}
# how a trial's learning curve ends when it did not complete: marker, colour, legend text
END_MARKERS = {
    "stopped early": ("X", "black", "stopped early (ASHA)"),
    "errored": ("s", "red", "errored"),
    "unfinished": (">", "0.4", "unfinished (study interrupted)"),
}
TOP = 5  # trials drawn in colour (and named in legends); the others are drawn in grey


def _study(tables: StudyTables, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    info = tables.study(name)
    return tables.trials[tables.trials["study"] == name], tables.epochs[tables.epochs["study"] == name], info


def _ranked(trials: pd.DataFrame, info: dict) -> pd.DataFrame:
    """The searched trials, best first (baseline arms are references, not candidates)."""
    col = f"best_{info['metric']}"
    if col not in trials:
        return trials.head(0)
    trials = trials[~is_arm(trials)]
    return trials.dropna(subset=[col]).sort_values(col, ascending=info["mode"] == "min")


ARM_STYLES = ("tab:red", "tab:purple", "tab:brown", "black")  # one per baseline arm, dashed
TRIAL_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:pink", "tab:olive", "tab:cyan")  # never an arm's


def _draw_arm_levels(ax, trials: pd.DataFrame, info: dict) -> None:
    """A dashed horizontal line at each baseline arm's best metric."""
    col = f"best_{info['metric']}"
    arms = trials[is_arm(trials)]
    for (_, arm), colour in zip(arms.iterrows(), ARM_STYLES * 4):
        if col in arm and pd.notna(arm[col]):
            ax.axhline(arm[col], ls="--", color=colour, lw=1.2, label=f"baseline {arm[BASELINE_COLUMN]} (best {arm[col]:.2f})", zorder=2)


def _label(trial: pd.Series) -> str:
    """The trial id and its values of the keys the registered methods label (α, θ, warm-up, ...)."""
    parts = [trial["trial_id"]]
    labels = {k: short for spec in METHODS.specs() for k, short in spec.labels.items()}
    for key, short in labels.items():
        if key in trial and pd.notna(trial[key]):
            parts.append(f"{short} {trial[key]:.2g}" if isinstance(trial[key], float) else f"{short} {trial[key]}")
    return ", ".join(parts)


def metric_vs_alpha(tables: StudyTables, name: str):
    """Each trial's metric against α at the last epoch every trial reached (equal training; its best where
    that is unknown), coloured by θ; the marker says how the trial ended."""
    trials, _, info = _study(tables, name)
    metric = info["metric"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    searched = lambda key: key if key in trials and trials[key].notna().any() else None  # noqa: E731  (columns of other studies are NaN here)
    x_key, c_key = searched("method.alpha"), searched("method.theta")
    common = f"{metric}_at_common" if f"{metric}_at_common" in trials and trials[f"{metric}_at_common"].notna().any() else None
    col = common or f"best_{metric}"
    if col in trials and x_key:
        for outcome, marker in OUTCOME_MARKERS.items():
            df = trials[(trials["outcome"] == outcome) & trials[col].notna()]
            if df.empty:
                continue
            # a colour map only when θ was searched (matplotlib warns about a cmap without data)
            colour = dict(c=df[c_key], cmap="viridis", vmin=trials[c_key].min(), vmax=trials[c_key].max()) if c_key else dict(c="tab:blue")
            sc = ax.scatter(df[x_key], df[col], marker=marker, s=70, edgecolors="black", linewidths=0.5, label=outcome, **colour)
        if c_key:
            fig.colorbar(sc, ax=ax, label="θ (entropy threshold)")
        _draw_arm_levels(ax, trials, info)
        ax.legend(title="trial ended", loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "α was not searched in this study", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("α (forget-rate multiplier)")
    where = f"{metric} at epoch {int(trials['common_epoch'].iloc[0])}, reached by every trial" if common else f"best {metric}"
    ax.set_ylabel(where)
    ax.set_title(f"{name}: {where}, vs α")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def learning_curves(tables: StudyTables, name: str):
    """The metric epoch by epoch for every trial; an X where early stopping ended a trial."""
    trials, epochs, info = _study(tables, name)
    metric = info["metric"]
    ranked = _ranked(trials, info)
    top = list(ranked["trial_id"].head(TOP))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = dict(zip(top, TRIAL_COLOURS))
    rank = {tid: k for k, tid in enumerate(top, start=1)}
    in_order = pd.concat([ranked, trials[~trials["trial_id"].isin(ranked["trial_id"])]])  # best first: the legend reads as a ranking
    arm_ids = set(trials[is_arm(trials)]["trial_id"])
    for _, trial in in_order.iterrows():
        df = epochs[epochs["trial_id"] == trial["trial_id"]]
        if df.empty or metric not in df:
            continue
        tid = trial["trial_id"]
        if tid in arm_ids:
            continue  # drawn below, dashed
        label = f"#{rank[tid]} {_label(trial)}" if tid in rank else None
        ax.plot(
            df["epoch"],
            df[metric],
            marker=".",
            color=colours.get(tid, "0.75"),
            lw=2 if tid in colours else 1,
            label=label,
            zorder=3 if tid in colours else 1,
        )
        if trial["outcome"] in END_MARKERS:
            marker, colour, _ = END_MARKERS[trial["outcome"]]
            ax.plot(df["epoch"].iloc[-1], df[metric].iloc[-1], marker, color=colour, ms=9, zorder=4)
    arms = trials[is_arm(trials)]
    for (_, arm), colour in zip(arms.iterrows(), ARM_STYLES * 4):
        df = epochs[epochs["trial_id"] == arm["trial_id"]]
        if not df.empty and metric in df:
            ax.plot(df["epoch"], df[metric], ls="--", color=colour, lw=1.5, label=f"baseline {arm[BASELINE_COLUMN]}", zorder=2)
    for outcome, (marker, colour, text) in END_MARKERS.items():
        if (trials["outcome"] == outcome).any():  # a legend entry only for what the plot shows
            ax.plot([], [], marker, color=colour, ms=9, ls="none", label=text)
    max_t = info.get("max_t")
    if max_t:
        ax.set_xlim(0.5, max_t + 0.5)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{name}: {metric} by epoch (top {len(top)} of {len(trials)} trials in colour)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def per_class_ap(tables: StudyTables, name: str):
    """Validation and test AP of every class for the best trial, at its best epoch."""
    trials, epochs, info = _study(tables, name)
    ranked = _ranked(trials, info)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(info.get("class_names", [])) + 2), 4.5))
    if ranked.empty:
        ax.text(0.5, 0.5, "no trial reported a result", ha="center", va="center", transform=ax.transAxes)
        return fig
    best = ranked.iloc[0]
    row = epochs[(epochs["trial_id"] == best["trial_id"]) & (epochs["epoch"] == best["best_epoch"])].iloc[0]
    classes = info.get("class_names") or sorted(c.removeprefix("test_AP_") for c in epochs if c.startswith("test_AP_"))
    x = np.arange(len(classes))
    for offset, split, colour in ((-0.2, "val", "tab:blue"), (0.2, "test", "tab:orange")):
        ax.bar(x + offset, [row.get(f"{split}_AP_{c}", np.nan) for c in classes], width=0.4, color=colour, label=split)
    ax.set_xticks(x, classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right" if max(map(len, classes)) > 3 else "center")
    ax.set_ylim(0, 100)
    ax.set_ylabel("average precision (%)")
    ax.set_xlabel("class")
    ax.set_title(f"{name}: per-class AP of the best trial {best['trial_id']} (epoch {int(best['best_epoch'])})")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def selection_over_epochs(tables: StudyTables, name: str):
    """Selection precision and recall and the corrections of each epoch, for the best trials."""
    trials, epochs, info = _study(tables, name)
    ranked = _ranked(trials, info)
    panels = [
        ("selection_precision", "selection precision"),
        ("selection_recall", "selection recall"),
        ("corrections", "corrections per epoch"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (key, title) in zip(axes, panels):
        drawn = False
        for k, (colour, (_, trial)) in enumerate(zip(plt.cm.tab10.colors, ranked.head(TOP).iterrows()), start=1):
            df = epochs[epochs["trial_id"] == trial["trial_id"]]
            if key in df and df[key].notna().any():
                ax.plot(df["epoch"], df[key], marker=".", color=colour, label=f"#{k} {_label(trial)}")
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not reported\n(no clean labels known)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if key != "corrections":
            ax.set_ylim(-0.02, 1.02)
        else:  # a count: from 0, and not a -0.04..0.04 axis when nothing was corrected
            ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(f"{name}: what the best {min(TOP, len(ranked))} trials trained on")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    if handles:  # below the panels, where it hides no line
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    return fig


def _last_value(rows: pd.DataFrame, column: str) -> float:
    if column not in rows:
        return np.nan
    values = rows[column].dropna()
    return float(values.iloc[-1]) if len(values) else np.nan


def noise_rates(tables: StudyTables, name: str):
    """Per-class noise rates: the ε_c the best trials searched, the best trial's estimated ε̂_c
    (method.noise_rate_source: estimated), and the realised rates where the clean labels are known."""
    trials, epochs, info = _study(tables, name)
    classes = info.get("class_names", [])
    ranked = _ranked(trials, info).head(3)
    eps_cols = [f"eps_{c}" for c in classes]
    searched = bool(classes) and all(c in trials and trials[c].notna().any() for c in eps_cols)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(classes) + 2), 4.5))
    best_rows = epochs[epochs["trial_id"] == ranked.iloc[0]["trial_id"]] if not ranked.empty else epochs.head(0)
    realised = [_last_value(best_rows, f"noise_rate_{c}") for c in classes]
    estimated = [_last_value(best_rows, f"noise_rate_hat_{c}") for c in classes]
    known = bool(classes) and not np.isnan(realised).all()
    has_estimate = bool(classes) and not np.isnan(estimated).all()
    if not searched and not known and not has_estimate:
        ax.text(0.5, 0.5, "per-class noise rates: not searched, not estimated, and the clean labels are unknown", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        return fig
    shown = ranked if searched else ranked.head(0)
    series = ([("realised noise rate", realised, "black")] if known else []) + (
        [(f"estimated ε̂_c of #1: {ranked.iloc[0]['trial_id']}", estimated, "tab:gray")] if has_estimate else []
    )
    series += [(f"ε_c of #{k + 1}: {t['trial_id']}", [t[c] for c in eps_cols], colour) for k, (colour, (_, t)) in
               enumerate(zip(plt.cm.tab10.colors, shown.iterrows()))]  # fmt: skip
    width = 0.8 / len(series)
    x = np.arange(len(classes))
    for k, (label, values, colour) in enumerate(series):
        ax.bar(x - 0.4 + width * (k + 0.5), values, width, color=colour, label=label)
    long_names = max(map(len, classes)) > 3
    ax.set_xticks(x, classes, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_xlabel("class")
    ax.set_ylabel("noise rate")
    parts = [f"searched ε_c of the {len(shown)} best trials"] if searched else []
    parts += ["the best trial's estimate"] if has_estimate else []
    what = " and ".join(parts) + (" vs the realised noise" if known else "") if parts else "realised noise per class (ε_c not searched)"
    ax.set_title(f"{name}: {what}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def parallel_coordinates(tables: StudyTables, name: str):
    """Every searched trial as a line across its searched values (each axis from its smallest to its
    largest value) to its best metric, coloured by that metric; dashed where ASHA stopped the trial."""
    frame = features(tables, name)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * frame.shape[1] + 2), 4.8))
    if frame.shape[1] < 2 or frame.empty:
        ax.text(0.5, 0.5, "no searched trial reported a result", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    lows, highs = frame.min(), frame.max()
    spans = (highs - lows).replace(0, 1.0)
    scaled = (frame - lows) / spans
    metric = frame.columns[-1]
    norm = plt.Normalize(frame[metric].min(), frame[metric].max())
    outcomes = tables.trials.set_index("trial_id")["outcome"]
    x = np.arange(frame.shape[1])
    for trial_id, row in scaled.sort_values(metric).iterrows():  # the best drawn last, on top
        stopped = outcomes.get(trial_id) == "stopped early"
        ax.plot(x, row.to_numpy(), color=plt.cm.viridis(norm(frame.loc[trial_id, metric])), lw=1.6, ls="--" if stopped else "-", alpha=0.9)
    for k, col in enumerate(frame.columns):
        ax.axvline(k, color="0.6", lw=0.8, zorder=0)
        ax.text(k, -0.06, f"{lows[col]:.3g}", ha="center", va="top", fontsize=7)
        ax.text(k, 1.06, f"{highs[col]:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [c.removeprefix("method.").removeprefix("optim.") for c in frame.columns], rotation=30, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=metric.replace("best_", "best "))
    ax.plot([], [], "k--", label="stopped early (ASHA)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.25))
    ax.set_title(f"{name}: searched values of {len(frame)} trials, coloured by {metric.replace('best_', 'best ')}")
    fig.tight_layout()
    return fig


def importance(tables: StudyTables, name: str):
    """How much each searched value mattered for the metric (analysis/importance.py: permutation
    importance of a random forest on held-out trials), with its spread over folds and repeats."""
    frame = features(tables, name)
    table = param_importance(frame)
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(table), 3) + 1.5))
    if table.empty:
        ax.text(0.5, 0.5, empty_importance_reason(frame), ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    y = np.arange(len(table))[::-1]
    ax.barh(y, table["importance"], xerr=table["std"], color="tab:blue", ecolor="0.3", capsize=3)
    ax.set_yticks(y, [p.removeprefix("method.").removeprefix("optim.") for p in table["param"]])
    ax.axvline(0, color="black", lw=0.8)
    metric = frame.columns[-1].replace("best_", "")
    ax.set_xlabel(f"rise of the held-out error in best {metric} when the value is shuffled")
    ax.set_title(f"{name}: parameter importance ({len(frame)} trials, random forest + permutation)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def empty_importance_reason(frame: pd.DataFrame) -> str:
    """Why the importance panel is empty, and what it needs."""
    if len(frame) < MIN_TRIALS:
        return (
            f"no importance: it needs {MIN_TRIALS} or more searched trials with a result,\n{len(frame)} here "
            f"({MIN_TRIALS - len(frame)} more: raise tune.num_samples)"
        )
    if frame.shape[1] < 2:
        return "no importance: no searched value varies across the trials"
    return f"no importance: every one of the {len(frame)} trials has the same {frame.columns[-1].replace('best_', 'best ')}"


def val_vs_test(tables: StudyTables, name: str):
    """Every trial's validation metric against its test counterpart at the last epoch every trial reached
    (trials at different epochs would correlate through their training length alone): does choosing by
    validation choose well on test? Baseline arms as stars; Spearman's rank correlation in the title."""
    trials, epochs, info = _study(tables, name)
    metric = info["metric"]
    test = "test_" + metric.removeprefix("val_") if metric.startswith("val_") else "test_mAP"
    fig, ax = plt.subplots(figsize=(6, 5))
    rows, arms = [], is_arm(trials)
    common = int(trials["common_epoch"].iloc[0]) if "common_epoch" in trials and trials["common_epoch"].notna().any() else None
    for index, trial in trials.iterrows():
        epoch = common if common is not None else trial.get("best_epoch")
        if pd.isna(epoch):
            continue
        at = epochs[(epochs["trial_id"] == trial["trial_id"]) & (epochs["epoch"] == epoch)]
        if at.empty or metric not in at or test not in at:
            continue
        rows.append({"val": float(at[metric].iloc[0]), "test": float(at[test].iloc[0]), "arm": bool(arms[index]),
                     "outcome": trial["outcome"], "label": trial[BASELINE_COLUMN] if arms[index] else trial["trial_id"]})  # fmt: skip
    points = pd.DataFrame(rows)
    if points.empty:
        ax.text(0.5, 0.5, f"no trial reported {metric} and {test}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    searched = points[~points["arm"]]
    for outcome, marker in OUTCOME_MARKERS.items():
        df = searched[searched["outcome"] == outcome]
        if not df.empty:
            ax.scatter(df["val"], df["test"], marker=marker, s=60, edgecolors="black", linewidths=0.5, label=outcome)
    for (_, arm), colour in zip(points[points["arm"]].iterrows(), ARM_STYLES * 4):
        ax.scatter(arm["val"], arm["test"], marker="*", s=220, color=colour, edgecolors="black", label=f"baseline {arm['label']}", zorder=4)
    lo, hi = points[["val", "test"]].min().min(), points[["val", "test"]].max().max()
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls=":", label="test = validation")
    rho = searched["val"].rank().corr(searched["test"].rank()) if len(searched) > 2 else float("nan")
    ax.set_xlabel(f"{metric} at epoch {common}, reached by every trial" if common is not None else f"{metric} at the best epoch")
    ax.set_ylabel(f"{test} at the same epoch")
    ax.set_title(f"{name}: validation vs test (Spearman ρ {rho:.2f} over {len(searched)} trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


PLOTS = {
    "metric_vs_alpha": metric_vs_alpha,
    "learning_curves": learning_curves,
    "per_class_ap": per_class_ap,
    "selection": selection_over_epochs,
    "noise_rates": noise_rates,
    "parallel_coordinates": parallel_coordinates,
    "importance": importance,
    "val_vs_test": val_vs_test,
}


def save_all(tables: StudyTables, out: Path) -> list[Path]:
    paths = []
    for name in tables.info:
        for plot, draw in PLOTS.items():
            fig = draw(tables, name)
            path = out / f"{name}_{plot}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


__all__ = [
    "PLOTS", "importance", "learning_curves", "metric_vs_alpha", "noise_rates", "parallel_coordinates", "per_class_ap", "save_all",
    "selection_over_epochs", "val_vs_test",
]  # fmt: skip
