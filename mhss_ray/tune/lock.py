"""One driver per study: a lock file in the study folder, refreshed while the driver lives.

Two `mhss-tune` runs of one study would interleave their trials and experiment states in one
folder. The driver that starts (or resumes, or overwrites) a study writes `mhss_study.lock` (host,
pid, a random token, a heartbeat time refreshed every HEARTBEAT_S seconds) and removes it when it
ends. A second driver is refused with the holder's host and pid. A driver that crashed leaves the
file behind; on this host it counts as gone when its pid has ended (or names a process started
later), whatever its heartbeat; a driver on another machine (e.g. a KubeRay head that was lost)
counts as gone when its heartbeat is older than STALE_S. Then the next driver takes the lock over
and says so.
"""

from __future__ import annotations

import json
import contextlib
import os
import socket
import threading
import time
import uuid

from ..errors import UserError
from ..outputs import pid_alive
from ..study_record import filesystem

LOCK_FILE = "mhss_study.lock"
HEARTBEAT_S = 30.0
STALE_S = 4 * HEARTBEAT_S


def _process_started(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22), None where unknown:
    tells a live holder from a process that took its pid after it ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class StudyLock:
    def __init__(self, study_path: str):
        self.study_path = study_path.rstrip("/")
        self.fs, inner = filesystem(self.study_path)
        self.inner = inner.rstrip("/")
        self.file = f"{self.inner}/{LOCK_FILE}"
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading

    def holder(self) -> dict | None:
        """The lock's content, {} for an unreadable lock file, None when there is none."""
        try:
            with self.fs.open_input_stream(self.file) as f:
                raw = f.readall().decode(errors="replace")
        except (FileNotFoundError, OSError):
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _gone(self, holder: dict) -> str | None:
        """Why the holder is no longer running (the lock may be taken over), or None if it may be."""
        if not holder:
            return "its lock file is unreadable"
        age = time.time() - float(holder.get("heartbeat", 0) or 0)
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int):
            # on this host the process itself is the truth: a live holder keeps its lock however old its
            # heartbeat (a driver stopped with Ctrl-Z, or starved), unless its pid now names another process
            if not pid_alive(pid):
                return f"pid {pid} on this host has ended"
            started = holder.get("pid_started")
            if started is not None and _process_started(pid) not in (None, started):
                return f"pid {pid} on this host is another process now"
            return None
        if age > STALE_S:
            return f"no heartbeat for {age:.0f} s"
        return None

    def check_free(self) -> None:
        """Refuse, naming the holder, if another live driver holds the study."""
        holder = self.holder()
        if holder is None or holder.get("token") == self.token or self._gone(holder):
            return
        age = time.time() - float(holder.get("heartbeat", 0) or 0)
        raise UserError(
            f"{self.study_path}: in use by mhss-tune pid {holder.get('pid')} on {holder.get('host')} (heartbeat {age:.0f} s ago); "
            f"wait for it to end, or if it crashed, rerun after {STALE_S:.0f} s without a heartbeat (or delete {LOCK_FILE} there)"
        )

    # ------------------------------------------------------------------ holding

    def _content(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "pid_started": _process_started(os.getpid()),
                "token": self.token,
                "started": self._started,
                "heartbeat": now,
            }
        ).encode()

    def _write(self, exclusive: bool) -> bool:
        data = self._content()
        if "://" not in self.study_path or self.study_path.startswith("file://"):
            path = self.file
            if exclusive:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return True
            tmp = f"{path}.{self.token}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except OSError:  # a full disk: no half-written heartbeat left behind
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            return True
        with self.fs.open_output_stream(self.file) as f:  # object stores: last writer wins, checked below
            f.write(data)
        return True

    def acquire(self) -> str | None:
        """Take the lock (creating the study folder); returns a note when a crashed driver's lock was taken over."""
        self.check_free()
        self._started = time.time()
        note = None
        holder = self.holder()
        if holder is not None and holder.get("token") != self.token:
            note = f"took over the lock of a driver that is gone ({self._gone(holder)})"
            self.fs.delete_file(self.file)
        self.fs.create_dir(self.inner, recursive=True)
        if not self._write(exclusive=True):
            self.check_free()  # another driver won the race: name it
            raise UserError(f"{self.study_path}: another mhss-tune took this study at the same moment; rerun once it has ended")
        if (self.holder() or {}).get("token") != self.token:
            self.check_free()
        self._thread = threading.Thread(target=self._beat, name="mhss-study-lock", daemon=True)
        self._thread.start()
        return note

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if (self.holder() or {}).get("token") == self.token:
                    self._write(exclusive=False)
            except OSError:
                pass  # a storage hiccup: the next beat tries again

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if (self.holder() or {}).get("token") == self.token:
                self.fs.delete_file(self.file)
        except OSError:
            pass


class DriverWatch:
    """A trial's view of the driver that started it: the study lock's token when the trial began. Before
    the trial writes into the study, `gone()` says whether that driver has ended (its pid on this host, its
    heartbeat elsewhere) or another holds the study: a trial of a killed driver then stops instead of
    writing beside the trials of a `--resume` (Ray's local cluster outlives a SIGKILLed driver)."""

    def __init__(self, study_path: str):
        self.lock = StudyLock(study_path)
        holder = self.lock.holder()
        self.token = (holder or {}).get("token")  # None: no driver holds a lock (train_point called directly)

    def gone(self) -> str | None:
        if self.token is None:
            return None
        try:
            holder = self.lock.holder()
        except OSError:
            return None  # a storage hiccup is not a dead driver
        if holder is None:
            return "its lock was released"
        if holder.get("token") != self.token:
            return f"another mhss-tune (pid {holder.get('pid')} on {holder.get('host')}) holds the study now"
        return self.lock._gone(holder)
