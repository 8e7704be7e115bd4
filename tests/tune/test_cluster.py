"""Studies on real multi-node Ray clusters started on this machine (ray.cluster_utils.Cluster:
its own processes, shut down by the test; never `ray stop`)."""

import json
import subprocess
import sys

import pytest
import yaml

from .test_study import TINY_SPACE

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})  # a logical GPU
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def run_study(tmp_path, cli_env, address, tune_block, name):
    data = dict(TINY_SPACE)
    data["schedule"] = {"epochs": 2}
    data["tune"] = tune_block
    space = tmp_path / f"{name}.yaml"
    space.write_text(yaml.safe_dump(data))
    storage = tmp_path / "studies"
    env = dict(cli_env, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mhss_ray.cli import tune_main; tune_main()",
            "--space",
            str(space),
            "--storage",
            str(storage),
            "--address",
            address,
            "--shared-storage",
        ],  # one machine: its disk is shared
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = {}
    for f in (storage / name).rglob("result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        trials[rows[0]["trial_id"]] = rows
    return trials


def test_fractional_gpu_packs_four_trials_on_one_gpu(tmp_path, cli_env, cluster):
    # (trials spreading over two nodes: tests/cluster/test_onprem.py)
    # gpu 0.25 per Ray Train worker: four trials at once on the one logical GPU (the trainer runs on CPU here)
    packed = run_study(
        tmp_path,
        cli_env,
        cluster.address,
        {
            "num_samples": 4,
            "max_concurrent_trials": 4,
            "scheduler": {"name": "fifo"},
            "search_alg": {"name": "random", "seed": 1},
            "resources": {"workers": 1, "cpus_per_worker": 0.5, "gpu_per_worker": 0.25},
        },
        "packed",
    )
    assert len(packed) == 4 and all(rows[-1]["epoch"] == 2 for rows in packed.values())
    starts = [rows[0]["timestamp"] - rows[0]["time_this_iter_s"] for rows in packed.values()]
    ends = [rows[-1]["timestamp"] for rows in packed.values()]
    assert max(starts) < min(ends), "the four trials should have run at the same time"
    assert len({rows[0]["node_id"] for rows in packed.values()}) == 1  # only the head node has the GPU
