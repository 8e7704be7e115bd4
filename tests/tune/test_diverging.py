"""A trial whose loss becomes NaN stops with its reason on record, the others go on, and
mhss-analyze lists it as errored. Real study, real divergence (an absurd learning rate and weight
decay blow the weights up within three epochs), nothing mocked."""

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.studies import TINY_SPACE, reported_epochs

pytestmark = pytest.mark.slow

ABSURD = {"optim.lr": 10.0, "optim.weight_decay": 1.0}  # AdamW: |w| grows ninefold a step, inf then NaN by epoch 3
SANE = {"optim.lr": 1e-3, "optim.weight_decay": 1e-4}


def test_diverging_trial_is_recorded_as_errored_and_the_others_finish(tmp_path, cli_env):
    data = dict(TINY_SPACE, schedule={"epochs": 4}, optim={"name": "adamw", "scheduler": "constant"})
    data["search"] = {
        "optim.lr": {"dist": "choice", "values": [1e-3, 10.0]},
        "optim.weight_decay": {"dist": "choice", "values": [1e-4, 1.0]},
    }
    data["tune"] = {
        "num_samples": 2, "max_concurrent_trials": 2, "max_failures": 1, "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 0, "points_to_evaluate": [ABSURD, SANE]},
        "resources": {"workers": 0, "cpus_per_worker": 1},
    }  # fmt: skip
    space = tmp_path / "diverge.yaml"
    space.write_text(yaml.safe_dump(data))
    storage = tmp_path / "studies"
    env = dict(cli_env, RAY_AUTH_MODE="disabled")
    tune = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(space), "--storage", str(storage)]
    proc = subprocess.run(tune, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # one trial of two errored: the study stands
    assert "2 trials, 1 errored" in proc.stdout

    study = storage / "diverge"
    analyze = [sys.executable, "-c", "from mhss_ray.cli import analyze_main; analyze_main()", str(study), "--out", str(tmp_path / "report")]
    out = subprocess.run(analyze, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 completed, 1 errored" in out.stdout or "1 errored, 1 completed" in out.stdout, out.stdout

    trials = pd.read_parquet(tmp_path / "report" / "trials.parquet").set_index("optim.lr")
    bad, good = trials.loc[10.0], trials.loc[1e-3]
    assert bad["outcome"] == "errored" and good["outcome"] == "completed" and good["epochs"] == 4
    assert bad["error"].startswith("mhss_ray.errors.TrainingDiverged: training loss became nan at epoch 3"), bad["error"]
    assert "optim.lr 10" in bad["error"]
    # Tune retried it (max_failures 1) from its epoch-2 checkpoint; it diverged again at once and
    # nothing it had reported was reported a second time
    assert bad["failures"] == 2 and bad["epochs"] == 2
    epochs = reported_epochs(study)
    assert sorted(epochs.values()) == [[1, 2], [1, 2, 3, 4]], epochs

    summary = (tmp_path / "report" / "summary.md").read_text()
    errored = summary.split("Errored trials:")[1]
    assert bad["trial_id"] in errored and "TrainingDiverged: training loss became nan" in errored
