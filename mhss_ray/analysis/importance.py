"""Which searched values mattered: the features of a study's searched trials and their importance
for its metric.

Importance is scikit-learn's permutation importance of a random forest, measured on held-out trials:
the forest learns each trial's best metric from its searched values on k-1 folds, and a value's
importance is how much worse it predicts the held-out fold when that value is shuffled (the rise of
the mean absolute error, in the metric's own points).
A random forest, like Optuna's fANOVA evaluator (which fits one too), needs no assumption about the
shape of the response; permutation on held-out trials, unlike the forest's impurity importances,
is not inflated for a value the forest merely memorised. scikit-learn is already a dependency, so
the plot needs no optional extra. With a few dozen trials the figures are rough: the plot draws
their spread over the folds and repeats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..study_record import NAMED_CLASSES  # per-class searched rates: one feature each up to this many classes, else their mean
from .load import StudyTables, column_name, is_arm

MIN_TRIALS = 8  # fewer searched trials with a metric: no importance is computed (a forest on a handful says nothing)


def features(tables: StudyTables, name: str) -> pd.DataFrame:
    """One row per searched trial with a metric, one column per searched value (per-class rates as their
    mean `eps (mean)` when there are many classes), and the best metric last, named `best_<metric>`."""
    info = tables.study(name)
    metric = f"best_{info['metric']}"
    trials = tables.trials[tables.trials["study"] == name]
    trials = trials[~is_arm(trials)]
    if metric not in trials:
        return pd.DataFrame()
    trials = trials.dropna(subset=[metric])
    classes = info.get("class_names", [])
    columns = [column_name(k, classes) for k in info.get("searched", [])]
    columns = [c for c in columns if c in trials and trials[c].notna().any()]
    per_class = [c for c in columns if c.startswith("eps_")]
    out = pd.DataFrame(index=trials.index)
    for col in columns:
        if col in per_class and len(per_class) > NAMED_CLASSES:
            continue
        values = trials[col]
        out[col] = values if pd.api.types.is_numeric_dtype(values) else values.astype("category").cat.codes
    if len(per_class) > NAMED_CLASSES:
        out["eps (mean)"] = trials[per_class].astype(float).mean(axis=1)
    out[metric] = trials[metric].astype(float)
    out.index = trials["trial_id"]
    return out


def param_importance(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Permutation importance (mean and std of the rise of the held-out mean absolute error) of every feature column of
    `features`; empty when there are fewer than MIN_TRIALS trials or nothing varies."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold

    if len(frame) < MIN_TRIALS or frame.shape[1] < 2:
        return pd.DataFrame(columns=["param", "importance", "std"])
    x = frame.iloc[:, :-1].to_numpy(dtype=float)
    y = frame.iloc[:, -1].to_numpy(dtype=float)
    if np.ptp(y) == 0:
        return pd.DataFrame(columns=["param", "importance", "std"])
    drops = []
    for train, held in KFold(n_splits=min(5, len(frame) // 2), shuffle=True, random_state=seed).split(x):
        forest = RandomForestRegressor(n_estimators=200, random_state=seed).fit(x[train], y[train])
        result = permutation_importance(forest, x[held], y[held], n_repeats=10, random_state=seed, scoring="neg_mean_absolute_error")
        drops.append(result.importances)  # features x repeats
    drops = np.concatenate(drops, axis=1)
    table = pd.DataFrame({"param": frame.columns[:-1], "importance": drops.mean(axis=1), "std": drops.std(axis=1)})
    return table.sort_values("importance", ascending=False, ignore_index=True)
