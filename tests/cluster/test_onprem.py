"""The on-prem path for real, on this machine: a two-node Ray cluster started with the `ray start`
commands of cluster/onprem.yaml (own temp dir and ports, stopped by process id, never `ray stop`),
then `mhss-tune --address` on it with a tiny demo study."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import REPO
from tests.studies import DEMO_TINY, tiny_demo_space

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_commands() -> tuple[list[str], list[str]]:
    """The `ray start` commands of cluster/onprem.yaml (what follows `ulimit ...;`)."""
    cfg = yaml.safe_load((REPO / "cluster" / "onprem.yaml").read_text())
    head = next(c for c in cfg["head_start_ray_commands"] if "ray start" in c).split(";")[-1]
    worker = next(c for c in cfg["worker_start_ray_commands"] if "ray start" in c).split(";")[-1]
    return shlex.split(head), shlex.split(worker)


def processes_of(temp_dir: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.fixture
def two_node_cluster():
    """(head address, env): the head and one worker node, 1 CPU each, on this machine."""
    head_cmd, worker_cmd = start_commands()
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="mhss-onprem-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_HEAD_IP="127.0.0.1", RAY_USAGE_STATS_ENABLED="0")
    # as in onprem.yaml, with this machine's ports and temp dir; the autoscaling config is a file the
    # cluster launcher writes on a real head, absent here
    head = [RAY if a == "ray" else a for a in head_cmd if not a.startswith("--autoscaling-config")]
    head = [f"--port={port}" if a.startswith("--port=") else a for a in head]
    head += [f"--temp-dir={temp_dir}", "--num-cpus=1", f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    worker = [RAY if a == "ray" else a.replace("$RAY_HEAD_IP:6379", f"127.0.0.1:{port}") for a in worker_cmd] + ["--num-cpus=1"]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, text=True, timeout=180)
        subprocess.run(worker, env=env, check=True, capture_output=True, text=True, timeout=180)
        yield f"127.0.0.1:{port}", env
    finally:
        procs = processes_of(temp_dir)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            p.kill()


def test_study_runs_on_a_two_node_cluster_started_like_onprem_yaml(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    env = dict(env, PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    deadline = time.time() + 120
    while True:  # the worker node registers with the head a few seconds after `ray start` returns
        status = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True, text=True, timeout=120)
        active = status.stdout.split("Pending:")[0]
        if active.count("node_") >= 2 or time.time() > deadline:
            break
        time.sleep(2)
    assert active.count("node_") == 2, status.stdout  # the head and the worker joined

    storage = tmp_path / "studies"
    sets = DEMO_TINY + ["tune.resources.workers=0", "tune.resources.cpus_per_worker=1", "tune.num_samples=2", "schedule.epochs=2"]
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(tiny_demo_space(tmp_path)), "--address", address]
    cmd += ["--storage", str(storage), *[a for s in sets for a in ("--set", s)]]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--shared-storage" in refused.stderr, refused.stderr  # a local folder needs the declaration
    start = time.time()
    proc = subprocess.run(cmd + ["--shared-storage"], env=env, capture_output=True, text=True, timeout=900)  # one disk here: shared indeed
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    nodes, trials = set(), 0
    for result in (storage / "demo").rglob("result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        trials += 1
        nodes |= {r["node_id"] for r in rows}
    assert trials == 2
    assert len(nodes) == 2, f"trials should have run on both nodes, ran on {nodes} in {time.time() - start:.0f} s"
