"""Parameter importance (mhss_ray.analysis.importance) on trials whose metric depends on one value only."""

import numpy as np
import pandas as pd

from mhss_ray.analysis.importance import MIN_TRIALS, param_importance


def test_the_value_that_drives_the_metric_ranks_first_and_noise_does_not_matter():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(size=(12, 3)), columns=["method.alpha", "method.theta", "optim.lr"])
    frame["best_val_mAP"] = 60 + 20 * frame["method.theta"] + rng.normal(0, 0.2, len(frame))
    table = param_importance(frame)
    assert table.iloc[0]["param"] == "method.theta" and table.iloc[0]["importance"] > 0.5  # points of held-out error in the metric
    others = table[table["param"] != "method.theta"]
    assert (others["importance"].abs() < table.iloc[0]["importance"] / 4).all()


def test_too_few_trials_or_a_flat_metric_give_no_importance():
    frame = pd.DataFrame({"method.alpha": np.linspace(0, 1, MIN_TRIALS - 1), "best_val_mAP": np.arange(MIN_TRIALS - 1.0)})
    assert param_importance(frame).empty
    flat = pd.DataFrame({"method.alpha": np.linspace(0, 1, 10), "best_val_mAP": 50.0})
    assert param_importance(flat).empty
