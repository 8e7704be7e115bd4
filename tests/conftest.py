"""Shared fixtures: a tiny but real run config (real timm network, real digits, real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mhss_ray.config import RunConfig, from_dict

REPO = Path(__file__).resolve().parents[1]

# timm's smallest ResNet (0.37 M parameters): real layers, checkpoints of a few MB. resnet18's 257 MB
# checkpoints, kept by every trial of every study, made one test run write over 40 GB.
TEST_MODEL = "test_resnet"

# Small enough to train an epoch in a few seconds on 2 CPU cores.
TINY = {
    "seed": 3,
    "data": {"image_size": 16, "n_train": 192, "n_val": 64, "n_test": 64, "batch_size": 32},
    "noise": {"mode": "naive", "rate": 0.2},
    "model": {"name": TEST_MODEL},
    "method": {"name": "asl"},
    "schedule": {"epochs": 3},
    "runtime": {"device": "cpu"},
}


def tiny_config(**sections) -> RunConfig:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(RunConfig, data)


@pytest.fixture
def tiny_yaml(tmp_path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory):
    """The tiny demo study with in-process trials, run once per session (tests/tune and tests/analysis
    both read it), logging to MLflow (a SQLite store) and W&B (offline) in trackers/ beside the studies
    (tests/tune/test_trackers.py reads them back): (storage folder, command, env, CompletedProcess)."""
    from tests.studies import run_demo_study

    folder = tmp_path_factory.mktemp("demo-study")
    trackers = folder / "trackers"
    trackers.mkdir()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{trackers / 'mlflow.db'}", "WANDB_MODE": "offline", "WANDB_DIR": str(trackers)}
    return run_demo_study(folder, workers=0, sets=["tune.callbacks=[mlflow,wandb]"], env=env)


@pytest.fixture(scope="session")
def killed_study(tmp_path_factory):
    """A study whose mhss-tune was SIGKILLed mid-trial, once per session: tests/tune resumes it,
    tests/analysis reads the snapshot taken right after the kill. (storage, command, env, snapshot)"""
    from tests.studies import run_killed_study

    return run_killed_study(tmp_path_factory.mktemp("killed-study"), workers=0)
