"""A user's own labels: `noise.mode: real` with no `noise.clean_subset`, end to end through the commands.

Nobody knows the clean labels, so every figure that needs them (realised eps_c, selection and
correction precision) says "not known"; nothing may fail for want of them.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from mhss_ray.data import fixtures
from tests.conftest import TEST_MODEL

REAL = {"mode": "real"}
# MHSS with rates estimated from the data, as a user without an oracle runs it; q 1 and a 1-epoch
# warm-up so that selection and refurbishment act within 3 epochs
METHOD = {"name": "mhss", "noise_rate_source": "estimated", "q": 1, "warmup": 1}
FORMATS = {
    "ucmerced": lambda root: fixtures.write_ucmerced(root, scenes=3, per_scene=12, size=16),
    "treesat": lambda root: fixtures.write_treesat(root, n_train=30, n_test=10, size=16),
    "sewerml": lambda root: fixtures.write_sewerml(root, n_train=36, n_val=12, size=16),
    "manifest": lambda root: fixtures.write_manifest(root, n=60, size=16, classes=("crack", "root", "deposit")),
}


def cli(command: str, *args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    code = f"from mhss_ray.cli import {command}; {command}()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def run_config(tmp_path, fmt: str) -> str:
    root = tmp_path / fmt
    root.mkdir()
    FORMATS[fmt](root)
    cfg = {
        "seed": 0,
        "data": {"name": fmt, "root": str(root), "image_size": 16, "batch_size": 16, "cache_dir": "off"},
        "noise": REAL,
        "model": {"name": TEST_MODEL},
        "method": METHOD,
        "schedule": {"epochs": 3},
        "runtime": {"device": "cpu", "threads": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_train_and_resume_with_real_labels_and_no_clean_subset(tmp_path, fmt):
    out = tmp_path / "run"
    proc = ok(cli("train_main", "--config", run_config(tmp_path, fmt), "--out", out))
    assert "clean labels unknown" in proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert not any(k.startswith("noise_rate_") and not k.startswith("noise_rate_hat_") for k in rows[-1])
    summary = json.loads((out / "summary.json").read_text())
    classes = list(summary["test_AP_final"])
    assert summary["noise_rate_mean"] is None and summary["noise_rates"] == {c: None for c in classes}
    assert set(summary["noise_rates_estimated"]) == set(classes)  # what the run estimated is there instead
    assert summary["selection_final"]["selection_precision"] is None  # needs clean labels: null, not NaN
    md = (out / "summary.md").read_text()
    assert "realised mean eps_c not known" in md and "| not known |" in md and "nan" not in md

    # --resume of the finished run reads the same rows back and writes the same summary
    (out / "summary.json").unlink()
    again = ok(cli("train_main", "--resume", "--out", out))
    assert "resuming" in again.stdout
    assert json.loads((out / "summary.json").read_text())["noise_rates"] == summary["noise_rates"]


def test_study_analysis_audit_and_predict_with_real_labels(tmp_path):
    fixtures.write_manifest(tmp_path / "data", n=60, size=16, classes=("crack", "root", "deposit"))
    space = {
        "seed": 0,
        "data": {"name": "manifest", "root": str(tmp_path / "data"), "image_size": 16, "batch_size": 16},
        "noise": REAL,
        "model": {"name": TEST_MODEL},
        "method": METHOD,
        "schedule": {"epochs": 3},
        "runtime": {"device": "cpu", "threads": 1},
        "search": {"method.alpha": {"dist": "uniform", "low": 0.5, "high": 1.5}},
        "tune": {
            "num_samples": 2,
            "max_concurrent_trials": 2,
            "baselines": ["asl"],
            "scheduler": {"name": "fifo"},
            "search_alg": {"name": "random", "seed": 0},
            "resources": {"workers": 0, "cpus_per_worker": 1},
        },
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    storage = tmp_path / "studies"
    ok(cli("tune_main", "--space", tmp_path / "space.yaml", "--storage", storage))
    study = storage / "space"

    ok(cli("analyze_main", study, "--out", tmp_path / "analysis"))
    trials = pd.read_parquet(tmp_path / "analysis" / "trials.parquet")
    assert len(trials) == 3 and (trials["outcome"] == "completed").all()
    assert "3 trials: 3 completed" in (tmp_path / "analysis" / "summary.md").read_text()

    audit = ok(cli("audit_main", "--from", study, "--out", tmp_path / "audit.csv"))
    assert "suspected label errors" in audit.stdout
    assert "precision" not in audit.stdout  # no clean labels: no precision to print
    table = pd.read_csv(tmp_path / "audit.csv")
    assert {"image", "class", "observed", "proposed"} <= set(table.columns)

    ok(cli("predict_main", "--from", study, "--images", "test", "--out", tmp_path / "pred.csv"))
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 10 and {"p_crack", "p_root", "p_deposit"} <= set(pred.columns)
