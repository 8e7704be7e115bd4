"""Full disks: a run's --out and a study's --storage on a small tmpfs. Refused before anything is
written when there is no room for a checkpoint; when the disk fills during the run, one line naming
the folder and the space needed, no partial file, and the run or study continues with --resume once
space is freed.

tmpfs needs root (CI runs as root); elsewhere these tests are skipped with that reason.
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from mhss_ray.data import fixtures
from tests.test_bad_input_hostile import snapshot

REPO = Path(__file__).resolve().parents[1]


def can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/mhss-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


pytestmark = pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs (CI runs as root)")


@contextmanager
def small_disk(path: Path, size: str):
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_mb: int) -> Path:
    """A file that takes all the disk's free space but `leave_mb` MB."""
    filler = disk / "filler.bin"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(free - leave_mb * 1_000_000, 1))
    return filler


def command(main: str, *args) -> list[str]:
    return [sys.executable, "-c", f"from mhss_ray.cli import {main}; {main}()", *map(str, args)]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")


def one_line(proc, *needles) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def config(tmp_path) -> Path:
    fixtures.write_manifest(tmp_path / "data", n=240, size=16, classes=("crack", "root", "deposit"))
    cfg = {
        "seed": 0,
        "data": {"name": "manifest", "root": str(tmp_path / "data"), "image_size": 16, "batch_size": 8, "cache_dir": "off"},
        "noise": {"mode": "naive", "rate": 0.2},
        "model": {"name": "resnet18"},
        "method": {"name": "asl"},
        "schedule": {"epochs": 3},
        "runtime": {"device": "cpu", "threads": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_refuses_a_disk_without_room_before_writing(tmp_path, config):
    with small_disk(tmp_path / "disk", "40m") as disk:
        before = snapshot(disk)
        proc = subprocess.run(command("train_main", "--config", config, "--out", disk / "run"), env=env(), capture_output=True, text=True)
        one_line(proc, f"--out {disk / 'run'}", "MB free", "needs about")
        assert snapshot(disk) == before


def test_train_on_a_disk_that_fills_stops_cleanly_and_resumes(tmp_path, config):
    with small_disk(tmp_path / "disk", "400m") as disk:
        out = disk / "run"
        run = subprocess.Popen(
            command("train_main", "--config", config, "--out", out), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 300
        while not (out / "checkpoint" / "checkpoint.pt").is_file() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        filler = fill(disk, leave_mb=5)  # another process takes the space during epoch 2
        stdout, stderr = run.communicate(timeout=300)
        proc = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
        one_line(proc, f"--out {out}", "no space left", "a checkpoint needs about", f"then: mhss-train --resume --out {out}")
        assert not list(out.rglob("*.tmp")), list(out.rglob("*"))

        filler.unlink()
        resumed = subprocess.run(command("train_main", "--resume", "--out", out), env=env(), capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        epochs = [yaml.safe_load(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2, 3] and (out / "summary.json").is_file()
