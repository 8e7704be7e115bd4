"""Watching a study: TensorBoard, started as the README and mhss-tune say, serves every trial's epochs."""

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mhss_ray.tune.study import free_port
from tests.studies import result_rows

pytestmark = pytest.mark.slow


def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def test_tensorboard_on_the_study_folder_serves_every_trials_scalars(demo_study, tmp_path):
    storage, _, _, proc = demo_study
    study = storage / "demo"
    assert f"tensorboard --logdir {study}" in proc.stdout  # what mhss-tune prints when the study starts
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(study), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        rows = result_rows(study)
        deadline, tags = time.time() + 120, {}
        while time.time() < deadline and len(tags) < len(rows):
            try:
                tags = {run: t for run, t in _get(port, "/data/plugin/scalars/tags").items() if "ray/tune/val_mAP" in t}
            except OSError:
                pass  # not listening yet
            time.sleep(1)
        assert sorted(run.removeprefix("trial_") for run in tags) == sorted(rows)  # one run per trial, named by its id
        for run in tags:
            query = urllib.parse.urlencode({"run": run, "tag": "ray/tune/val_mAP"})
            served = [(step, value) for _, step, value in _get(port, f"/data/plugin/scalars/scalars?{query}")]
            reported = [(r["training_iteration"], r["val_mAP"]) for r in rows[run.removeprefix("trial_")]]
            assert served == [(s, pytest.approx(v)) for s, v in reported], run
    finally:
        server.terminate()
        server.wait(30)
