"""What mhss-tune prints: the live table's columns and the trials' own lines (mhss_ray.tune.console).
The console of whole studies is checked in test_study.py."""

import dataclasses
import io
import sys

from mhss_ray.tune.console import reporter, short_names, summary_metrics, trial_line
from mhss_ray.tune.space import load_space

from .test_space import SPACE, write


def test_searched_keys_get_short_columns_and_many_per_class_rates_their_mean(tmp_path):
    spec = load_space(write(tmp_path, SPACE))
    names = short_names(spec)
    assert names == {"method.alpha": "alpha", "method.theta": "theta", "method.q": "q", "optim.lr": "lr"}  # 10 classes: no column each
    point = {d.key: 0.1 for d in spec.dimensions} | {"method.noise_rates[0]": 0.3}
    assert summary_metrics(spec, point) == {"eps_mean": (0.3 + 9 * 0.1) / 10}
    assert summary_metrics(spec, {"baseline": "asl"}) == {"arm": "asl"}
    table = reporter(spec)
    assert table._metric_columns == {"epoch": "epoch", "val_mAP": "val_mAP", "eps_mean": "eps (mean)"}
    assert table._parameter_columns == names


def test_the_rates_of_a_few_classes_get_a_column_each(tmp_path):
    spec = load_space(write(tmp_path, SPACE))
    per_class = [d for d in spec.dimensions if d.key.startswith("method.noise_rates[")][:3]
    others = [d for d in spec.dimensions if not d.key.startswith("method.noise_rates[")]
    few = dataclasses.replace(spec, class_names=["crack", "root", "joint"], dimensions=others + per_class)
    names = short_names(few)
    assert [names[d.key] for d in per_class] == ["eps_crack", "eps_root", "eps_joint"]
    assert summary_metrics(few, {d.key: 0.1 for d in few.dimensions}) == {}  # named columns: no mean needed


def test_a_trial_line_starts_with_its_id_and_is_written_once(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(a))  # as Ray Train's print patch would
    trial_line("3aa3f2d1")("epoch 1/4  loss 7.0289")
    assert out.getvalue() == "[3aa3f2d1] epoch 1/4  loss 7.0289\n" and printed == []
