"""The on-prem path for real, on this machine: a two-node Ray cluster started with the `ray start`
commands of cluster/onprem.yaml (own temp dir and ports, stopped by process id, never `ray stop`),
then `mhss-tune --address` on it, and the worker node lost in the middle of the study."""

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import REPO
from tests.studies import TINY_SPACE, result_rows

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


@dataclass
class TwoNodes:
    address: str  # the head's GCS
    env: dict
    worker_ip: str  # the worker node's own address, as a second machine would have
    worker_marker: str  # in the environment of every process of the worker node (how the test finds them)
    head_only: Path  # a folder the head sees and the worker node does not (an empty tmpfs over it there)

    def worker_processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("MHSS_TEST_NODE") == self.worker_marker:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return found

    def wait_for_both(self) -> None:
        deadline = time.time() + 120
        while True:  # the worker node registers with the head a few seconds after `ray start` returns
            status = subprocess.run([RAY, "status", "--address", self.address], env=self.env, capture_output=True, text=True, timeout=120)
            active = status.stdout.split("Pending:")[0]
            if active.count("node_") >= 2 or time.time() > deadline:
                break
            time.sleep(2)
        assert active.count("node_") == 2, status.stdout  # the head and the worker joined


@pytest.fixture
def two_node_cluster():
    """The head and one worker node, 1 CPU each, on this machine."""
    head_cmd, worker_cmd = start_commands()
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="mhss-onprem-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_HEAD_IP="127.0.0.1", RAY_USAGE_STATS_ENABLED="0")
    # as in onprem.yaml, with this machine's ports and temp dir; the autoscaling config is a file the
    # cluster launcher writes on a real head, absent here
    head = [RAY if a == "ray" else a for a in head_cmd if not a.startswith("--autoscaling-config")]
    head = [f"--port={port}" if a.startswith("--port=") else a for a in head]
    head += [f"--temp-dir={temp_dir}", "--num-cpus=1", f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    worker = [RAY if a == "ray" else a.replace("$RAY_HEAD_IP:6379", f"127.0.0.1:{port}") for a in worker_cmd]
    worker += ["--num-cpus=1", "--node-ip-address=127.0.0.2"]  # a loopback address of its own: like another machine
    head_only = Path(tempfile.mkdtemp(prefix="mhss-onprem-data-"))
    nodes = TwoNodes(f"127.0.0.1:{port}", env, "127.0.0.2", temp_dir, head_only)
    # the worker node in a mount namespace of its own, where head_only is an empty tmpfs: a folder that
    # one machine of a real cluster has and another lacks
    hide = f"mount -t tmpfs tmpfs {shlex.quote(str(head_only))} && exec {shlex.join(worker)}"
    worker = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, text=True, timeout=180)
        subprocess.run(worker, env=dict(env, MHSS_TEST_NODE=temp_dir), check=True, capture_output=True, text=True, timeout=180)
        yield nodes
    finally:
        procs = processes_of(temp_dir) + nodes.worker_processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(temp_dir, ignore_errors=True)  # the nodes' logs and sockets
        shutil.rmtree(head_only, ignore_errors=True)


def test_study_survives_the_loss_of_a_worker_node(two_node_cluster, tmp_path):
    """A study on the cluster; the worker node's processes are SIGKILLed while a trial runs on it.
    The study completes: the lost trial is retried on the head from its last checkpoint."""
    nodes = two_node_cluster
    env = dict(nodes.env, PYTHONPATH=str(REPO) + os.pathsep + nodes.env.get("PYTHONPATH", ""))
    nodes.wait_for_both()

    data = dict(TINY_SPACE, schedule={"epochs": 6})
    data["tune"] = {
        "num_samples": 2, "max_concurrent_trials": 2, "max_failures": 1, "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 5}, "resources": {"workers": 0, "cpus_per_worker": 1},
    }  # fmt: skip
    space = tmp_path / "nodeloss.yaml"
    space.write_text(yaml.safe_dump(data))
    storage = tmp_path / "studies"
    cmd = [
        sys.executable,
        "-c",
        "from mhss_ray.cli import tune_main; tune_main()",
        "--space",
        str(space),
        "--address",
        nodes.address,
        "--storage",
        str(storage),
    ]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--shared-storage" in refused.stderr, refused.stderr  # a local folder needs the declaration

    # a dataset the head has and the worker node lacks: refused before anything is written, naming the node
    from mhss_ray.data import fixtures

    fixtures.write_ucmerced(nodes.head_only / "ucmerced")
    elsewhere = [*cmd, "--shared-storage", "--set", "data.name=ucmerced", "--set", f"data.root={nodes.head_only / 'ucmerced'}"]
    missing = subprocess.run(elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stdout[-2000:] + missing.stderr[-2000:]
    line = missing.stderr.strip().splitlines()[-1]
    assert f"data.root: {nodes.head_only / 'ucmerced'}: not on node" in line and f"({nodes.worker_ip})" in line, line
    assert not storage.exists() or not any(storage.rglob("*")), "a refused study must not write anything"

    # the decode cache built before the first trial: a task on each node, on a folder both see (one disk
    # here, as a shared mount): one of them builds each split's entry, the other waits and opens it
    fixtures.write_ucmerced(tmp_path / "shared" / "ucmerced")
    prebuild = (
        "import ray, sys; from mhss_ray.tune.space import load_space; from mhss_ray.tune.prebuild import prebuild_decode_cache\n"
        f"ray.init(address={nodes.address!r})\n"
        f"print('NODES', *prebuild_decode_cache(load_space({str(space)!r}, sys.argv[1:]), {nodes.address!r}))\n"
    )
    sets = [f"data.root={tmp_path / 'shared' / 'ucmerced'}", "data.name=ucmerced", f"data.cache_dir={tmp_path / 'shared' / 'cache'}"]
    quiet = dict(env, RAY_DEDUP_LOGS="0")  # as mhss-tune sets it: Ray would fold similar lines of the two nodes into one
    built = subprocess.run([sys.executable, "-c", prebuild, *sets], env=quiet, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    # each task's lines, once (two log monitors on one machine may both pass a line on)
    said = set(re.findall(r"_build_on_node pid=(\d+)[^)]*\)\S* (decode cache: .*)", built.stdout + built.stderr))
    assert sum("decode cache: decoding" in line for _, line in said) == 3, said
    assert len({pid for pid, line in said if "ready on node" in line}) == 2, said
    ran_on = next(line.split()[1:] for line in built.stdout.splitlines() if line.startswith("NODES"))
    assert len(set(ran_on)) == 2 and nodes.worker_ip in ran_on, ran_on  # a task on each node
    assert len([p for p in (tmp_path / "shared" / "cache").iterdir() if p.is_dir()]) == 3

    log = tmp_path / "mhss-tune.log"
    with log.open("w") as out:  # one disk here: shared indeed
        proc = subprocess.Popen(cmd + ["--shared-storage"], env=env, stdout=out, stderr=subprocess.STDOUT)
    study = storage / "nodeloss"
    deadline, on_worker = time.time() + 600, {}
    while time.time() < deadline and proc.poll() is None:
        on_worker = {t: [r["epoch"] for r in rows if r["node_ip"] == nodes.worker_ip] for t, rows in result_rows(study).items()}
        if any(2 <= len(e) < 6 for e in on_worker.values()):
            break
        time.sleep(0.5)
    lost = next((t for t, e in on_worker.items() if 2 <= len(e) < 6), None)
    assert lost, f"no trial reached epoch 2 on the worker node: {on_worker}\n{log.read_text()[-3000:]}"
    victims = nodes.worker_processes()
    assert len(victims) >= 3  # its raylet, its agents and the trial's worker process at least
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]

    trials = result_rows(study)
    assert len(trials) == 2
    first_nodes = {rows[0]["node_ip"] for rows in trials.values()}
    assert nodes.worker_ip in first_nodes and len(first_nodes) == 2  # the trials started on both nodes
    for trial_id, rows in trials.items():
        assert sorted({r["epoch"] for r in rows}) == [1, 2, 3, 4, 5, 6], (trial_id, [(r["epoch"], r["node_ip"]) for r in rows])
    # the lost trial: its epochs on the dead node, then the rest on the head, from its last checkpoint
    # Tune had registered: at most the epoch of the kill is trained and reported again (seen: epochs
    # 1-3 on the worker, then 4-6 on the head; and once 3-6, when epoch 3's checkpoint had not
    # reached Tune before the node died). The analysis tables keep one row per epoch.
    ips, epochs = [r["node_ip"] for r in trials[lost]], [r["epoch"] for r in trials[lost]]
    moved = ips.index(next(ip for ip in ips if ip != nodes.worker_ip))
    assert moved >= 2 and set(ips[:moved]) == {nodes.worker_ip} and nodes.worker_ip not in ips[moved:], ips
    assert epochs[:moved] == list(range(1, moved + 1))
    assert epochs[moved] in (epochs[moved - 1], epochs[moved - 1] + 1) and epochs[moved:] == list(range(epochs[moved], 7)), epochs

    from mhss_ray.analysis.load import load_study

    tables = load_study(str(study))
    by_id = tables.trials.set_index("trial_id")
    assert set(by_id["outcome"]) == {"completed"} and by_id.loc[lost, "failures"] == 1
    assert len(tables.epochs) == 12 and not tables.epochs.duplicated(["trial_id", "epoch"]).any()
