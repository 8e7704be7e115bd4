"""Studies -> an Optuna storage, so that `optuna-dashboard` (history, slice, parallel-coordinate and
importance views) and Optuna's own API read them: `mhss-analyze STUDY --optuna-storage sqlite:///FILE.db`.

One Optuna study per study, named like it; one Optuna trial per searched Tune trial:
    params               the sampled point, named like the columns of trials.parquet (eps_<class> for per-class rates),
                         declared with the distributions of the space file (the study record keeps them)
    intermediate values  the study's metric at every epoch (step = epoch)
    value                the trial's best metric over its epochs (what mhss-analyze ranks trials by); a pruned
                         trial keeps its last value, as Optuna's own pruning does
    start, complete      when the trial started and last reported, from Tune's result rows
    state                COMPLETE (ran to max_t), PRUNED (stopped early by ASHA), FAIL (errored, or unfinished
                         because the study was interrupted; the user attribute `outcome` says which)
The baseline arms are study attributes (`baseline <method> best <metric>`), not trials: an arm has no
point of the space, and one trial without parameters would empty the space that Optuna's importance
and parallel-coordinate views share. Nothing in the storage is replaced: a study name already there
is refused.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime

import pandas as pd

from ..errors import UserError
from .load import BASELINE_COLUMN, StudyTables, column_name, is_arm

STATES = {"completed": "COMPLETE", "stopped early": "PRUNED", "errored": "FAIL", "unfinished": "FAIL"}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("--optuna-storage needs Optuna: pip install 'mhss-ray[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per created study
    return optuna


def _plain(value):
    """A value Optuna stores: numpy scalars become Python numbers."""
    return value.item() if hasattr(value, "item") else value


def distribution(dim: dict, observed: pd.Series):
    """The Optuna distribution of one dimension of the space file, widened to the values the trials
    hold (Optuna refuses a value outside its distribution)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dist, p = dim.get("dist"), dim.get("params", {})
    values = [_plain(v) for v in observed.dropna()]
    if dist in ("choice", "grid"):
        return CategoricalDistribution(list(dict.fromkeys([*p.get("values", []), *values])))
    if dist in ("randint", "qrandint"):
        high = p["high"] - 1 if dist == "randint" else p["high"]  # randint's high is never sampled
        return IntDistribution(int(min([p["low"], *values])), int(max([high, *values])))
    if dist in ("uniform", "loguniform", "quniform"):
        return FloatDistribution(float(min([p["low"], *values])), float(max([p["high"], *values])), log=dist == "loguniform")
    return inferred(observed)


def inferred(observed: pd.Series):
    """For a study recorded before its distributions were: the range (or the set) of the values seen."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    values = [_plain(v) for v in observed.dropna()]
    if values and all(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return CategoricalDistribution(list(dict.fromkeys(values)))
    if values and all(isinstance(v, int) for v in values):
        return IntDistribution(min(values), max(values))
    return FloatDistribution(float(min(values, default=0.0)), float(max(values, default=0.0)))


def searched_columns(tables: StudyTables, name: str) -> dict[str, dict]:
    """trials.parquet column -> its dimension of the space file ({} where the record predates them)."""
    info = tables.study(name)
    classes = info.get("class_names", [])
    dims = {d["key"]: d for d in info.get("dimensions", [])}
    return {column_name(key, classes): dims.get(key, {}) for key in info.get("searched", [])}


def optuna_trials(tables: StudyTables, name: str) -> tuple[list, dict]:
    """(Optuna trials, study attributes) of one study."""
    optuna = _optuna()
    info = tables.study(name)
    metric = info["metric"]
    trials = tables.trials[tables.trials["study"] == name]
    epochs = tables.epochs[tables.epochs["study"] == name]
    searched = trials[~is_arm(trials)]
    columns = {c: d for c, d in searched_columns(tables, name).items() if c in searched}
    dists = {c: distribution(d, searched[c]) if d else inferred(searched[c]) for c, d in columns.items()}
    out = []
    for _, row in searched.iterrows():
        mine = epochs[epochs["trial_id"] == row["trial_id"]]
        steps = {int(e): float(v) for e, v in zip(mine["epoch"], mine[metric]) if pd.notna(v)} if metric in mine else {}
        state = getattr(optuna.trial.TrialState, STATES[row["outcome"]])
        best = row.get(f"best_{metric}")
        value = float(best) if state.name == "COMPLETE" and pd.notna(best) else None
        if state.name == "PRUNED" and steps:
            value = steps[max(steps)]  # Optuna's convention: a pruned trial's value is its last intermediate one
        if state.name == "COMPLETE" and value is None:
            state = optuna.trial.TrialState.FAIL  # ran to the end without reporting its metric
        params = {c: _plain(row[c]) for c in columns if pd.notna(row[c])}
        attrs = {"trial_id": row["trial_id"], "outcome": row["outcome"], "epochs": int(row["epochs"])}
        for key in ("best_epoch", "test_mAP_at_best", "error", "node"):
            if key in row and pd.notna(row[key]) and row[key] != "":
                attrs[key] = _plain(row[key])
        trial = optuna.trial.create_trial(
            state=state,
            value=value,
            params=params,
            distributions={c: dists[c] for c in params},
            user_attrs=attrs,
            intermediate_values={k: v for k, v in steps.items() if math.isfinite(v)},
        )
        if pd.notna(row.get("started")) and pd.notna(row.get("ended")):  # Tune's times, not the export's
            trial.datetime_start = datetime.fromtimestamp(float(row["started"]))
            trial.datetime_complete = datetime.fromtimestamp(float(row["ended"])) if state.is_finished() else None
        out.append(trial)
    study_attrs = {"metric": metric, "max_t": info.get("max_t"), "space_file": info.get("space_file")}
    for _, arm in trials[is_arm(trials)].iterrows():
        best = arm.get(f"best_{metric}")
        study_attrs[f"baseline {arm[BASELINE_COLUMN]} best {metric}"] = float(best) if pd.notna(best) else None
    return out, study_attrs


def check_export(tables: StudyTables, storage: str) -> None:
    """Before anything is written: the storage opens and holds none of these study names."""
    optuna = _optuna()
    try:
        existing = set(optuna.get_all_study_names(storage))
    except Exception as exc:  # a bad URL or an unreachable database: SQLAlchemy's and Optuna's errors vary
        raise UserError(f"--optuna-storage {storage}: cannot open ({str(exc).splitlines()[0][:160]})") from None
    _check_writes(storage)
    taken = sorted(existing & set(tables.info))
    if taken:
        raise UserError(
            f"--optuna-storage {storage}: already holds a study named {taken[0]!r}; export into another storage, "
            "or delete that one first (optuna delete-study)"
        )


def _check_writes(storage: str) -> None:
    """The storage takes writes: an UPDATE of no row opens a write transaction (refused by a read-only
    database or mount, or a user without write rights) and is rolled back, changing nothing."""
    import sqlalchemy as sa

    engine = sa.create_engine(storage)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("UPDATE studies SET study_name = study_name WHERE 1 = 0"))
            conn.rollback()
    except Exception as exc:  # noqa: BLE001  (drivers differ: the first line of theirs says why)
        raise UserError(f"--optuna-storage {storage}: cannot write ({str(exc).splitlines()[0][:160]})") from None
    finally:
        engine.dispose()


def export(tables: StudyTables, storage: str) -> list[str]:
    """Write every study of `tables` into the Optuna storage (an RDB URL such as sqlite:///FILE.db);
    returns the study names written. The caller has run check_export."""
    optuna = _optuna()
    prepared = {name: optuna_trials(tables, name) for name in tables.info}  # every study converts before the first is written
    for name, (trials, attrs) in prepared.items():
        info = tables.study(name)
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize" if info["mode"] == "max" else "minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 3.2, still flagged
            study.set_metric_names([info["metric"]])
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        study.add_trials(trials)
    return list(prepared)
