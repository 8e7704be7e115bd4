"""One driver per study, for real: a second mhss-tune of a running study is refused naming the first;
Ctrl-C ends a study with the mhss-tune command that resumes it; a lock left by a killed driver is
taken over by the next run, which then finishes the study."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO
from tests.studies import killed_space, reported_epochs

pytestmark = pytest.mark.slow
EPOCHS = 16


def test_second_driver_is_refused_ctrl_c_prints_the_resume_command_and_a_stale_lock_is_taken_over(tmp_path):
    space = killed_space(tmp_path, workers=0, trials=1)
    data = yaml.safe_load(space.read_text())
    data["schedule"]["epochs"] = EPOCHS  # long enough that the first driver still runs when the second starts
    space.write_text(yaml.safe_dump(data))
    storage = tmp_path / "studies"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(space), "--storage", str(storage)]
    lock = storage / "resume" / "mhss_study.lock"

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None and not any(len(e) >= 1 for e in reported_epochs(storage).values()):
        time.sleep(0.2)
    assert first.poll() is None, "the study ended before the test could run a second driver"
    holder = json.loads(lock.read_text())
    assert (holder["pid"], holder["host"]) == (first.pid, socket.gethostname())

    second = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"in use by mhss-tune pid {first.pid} on {socket.gethostname()}" in second.stderr
    assert json.loads(lock.read_text())["pid"] == first.pid  # the refused driver left the lock alone

    os.kill(first.pid, signal.SIGINT)  # Ctrl-C
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, out[-2000:] + err[-2000:]
    assert "--resume" in out and f"mhss-tune --space {space}" in out and "Tuner.restore(" not in out + err
    assert not lock.exists()  # released on the way out
    interrupted = reported_epochs(storage)
    assert interrupted and max(len(e) for e in interrupted.values()) < EPOCHS, interrupted

    # a driver killed outright leaves its lock behind: the next run takes it over (dead pid, this host)
    lock.write_text(
        json.dumps({"host": socket.gethostname(), "pid": first.pid, "token": "gone", "started": time.time(), "heartbeat": time.time()})
    )
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"took over the lock of a driver that is gone (pid {first.pid} on this host has ended)" in resumed.stdout
    assert not lock.exists()
    for epochs in reported_epochs(storage).values():
        assert epochs.count(1) == 1 and sorted(set(epochs)) == list(range(1, EPOCHS + 1)), epochs  # continued, not restarted
