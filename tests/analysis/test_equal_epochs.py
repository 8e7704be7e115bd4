"""The analysis compares trials at equal training (issue: studies that spend compute where the knobs act)."""

import pandas as pd

from mhss_ray.analysis.importance import MIN_TRIALS
from mhss_ray.analysis.load import at_common_epoch
from mhss_ray.analysis.plots import ARM_STYLES, TRIAL_COLOURS, empty_importance_reason


def tables():
    trials = pd.DataFrame({
        "trial_id": ["a", "b", "c", "arm"], "epochs": [9, 5, 9, 9], "baseline": ["", "", "", "asl"],
        "outcome": ["completed", "stopped early", "completed", "completed"],
    })  # fmt: skip
    rows = []
    for tid, n, slope in (("a", 9, 1.0), ("b", 5, 2.0), ("c", 9, 0.5), ("arm", 9, 1.5)):
        rows += [{"trial_id": tid, "epoch": e, "val_mAP": slope * e, "test_mAP": slope * e + 1} for e in range(1, n + 1)]
    return trials, pd.DataFrame(rows)


def test_trials_are_compared_at_the_last_epoch_every_searched_trial_reached():
    trials, epochs = tables()
    out = at_common_epoch(trials, epochs, "val_mAP").set_index("trial_id")
    assert (out["common_epoch"] == 5).all()  # b, stopped by ASHA at 5, sets it; the arm does not
    assert out["val_mAP_at_common"].to_dict() == {"a": 5.0, "b": 10.0, "c": 2.5, "arm": 7.5}
    assert out.loc["b", "test_mAP_at_common"] == 11.0
    assert out["val_mAP_at_common"].idxmax() == "b"


def test_the_importance_panel_says_why_it_is_empty_and_what_it_needs():
    few = pd.DataFrame({"method.alpha": [1.0, 2.0], "best_val_mAP": [50.0, 60.0]})
    assert f"needs {MIN_TRIALS} or more searched trials with a result,\n2 here ({MIN_TRIALS - 2} more: raise tune.num_samples)" in (
        empty_importance_reason(few)
    )
    flat = pd.DataFrame({"method.alpha": range(MIN_TRIALS), "best_val_mAP": [50.0] * MIN_TRIALS})
    assert "has the same best val_mAP" in empty_importance_reason(flat)


def test_arms_and_trials_never_share_a_colour():
    assert not set(TRIAL_COLOURS) & set(ARM_STYLES)
