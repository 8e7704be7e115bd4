"""Who holds a study's lock (tune/lock.py), read from real lock files and real processes: on this host
the process is the truth, whatever its heartbeat; a driver on another host is gone once its heartbeat
is older than STALE_S."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mhss_ray.errors import UserError
from mhss_ray.tune.lock import LOCK_FILE, STALE_S, StudyLock, _process_started


def write_lock(study, **fields):
    study.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "token": "other", "started": 0.0, "heartbeat": time.time()}
    holder.update(fields)
    (study / LOCK_FILE).write_text(json.dumps(holder))


def test_a_live_driver_on_this_host_keeps_its_lock_however_old_its_heartbeat(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = time.time() - 10 * STALE_S  # e.g. a driver stopped with Ctrl-Z for 20 minutes
        write_lock(tmp_path / "s", pid=sleeper.pid, pid_started=_process_started(sleeper.pid), heartbeat=old)
        with pytest.raises(UserError, match=f"in use by mhss-tune pid {sleeper.pid}"):
            StudyLock(str(tmp_path / "s")).check_free()
    finally:
        sleeper.kill()
        sleeper.wait()
    # once it has ended, the lock is taken over, as before
    lock = StudyLock(str(tmp_path / "s"))
    note = lock.acquire()
    lock.release()
    assert note.startswith(f"took over the lock of a driver that is gone (pid {sleeper.pid}")


def test_a_pid_that_now_names_a_later_process_does_not_hold_the_lock(tmp_path):
    started = _process_started(os.getpid())
    write_lock(tmp_path / "s", pid=os.getpid(), pid_started=started - 1)  # the holder's pid, reused by this process
    lock = StudyLock(str(tmp_path / "s"))
    assert lock._gone(lock.holder()) == f"pid {os.getpid()} on this host is another process now"
    write_lock(tmp_path / "s", pid=os.getpid(), pid_started=started)
    assert lock._gone(lock.holder()) is None


def test_a_driver_on_another_host_is_gone_after_stale_s_without_a_heartbeat(tmp_path):
    lock = StudyLock(str(tmp_path / "s"))
    write_lock(tmp_path / "s", host="elsewhere", pid=1, heartbeat=time.time() - 5)
    assert lock._gone(lock.holder()) is None
    write_lock(tmp_path / "s", host="elsewhere", pid=1, heartbeat=time.time() - STALE_S - 5)
    assert lock._gone(lock.holder()).startswith("no heartbeat for")
