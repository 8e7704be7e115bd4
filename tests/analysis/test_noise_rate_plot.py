"""The noise-rate plot shows a study's estimated per-class rates beside the realised ones."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from mhss_ray.analysis.load import StudyTables  # noqa: E402
from mhss_ray.analysis.plots import noise_rates  # noqa: E402


def test_estimated_rates_are_drawn_against_the_realised_ones():
    classes = ["crack", "root"]
    trials = pd.DataFrame([{"study": "s", "trial_id": "t1", "outcome": "completed", "best_val_mAP": 50.0}])
    epochs = pd.DataFrame(
        [
            {"study": "s", "trial_id": "t1", "epoch": 1, "noise_rate_crack": 0.2, "noise_rate_root": 0.1},
            {"study": "s", "trial_id": "t1", "epoch": 2, "noise_rate_crack": 0.2, "noise_rate_root": 0.1, "noise_rate_hat_crack": 0.18,
             "noise_rate_hat_root": 0.12},
        ]
    )  # fmt: skip
    tables = StudyTables(trials, epochs, {"s": {"metric": "val_mAP", "mode": "max", "class_names": classes}})
    fig = noise_rates(tables, "s")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["realised noise rate", "estimated ε̂_c of #1: t1"]
    heights = [round(p.get_height(), 3) for p in ax.patches]
    assert heights == [0.2, 0.1, 0.18, 0.12]
    assert "estimate" in ax.get_title()
