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
    with open(filler, "wb") as f:
        for attempt in range(20):  # the run writes meanwhile: ask for a little less each time
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            try:
                os.posix_fallocate(f.fileno(), 0, max(free - (leave_mb + 10 * attempt) * 1_000_000, 1))
                return filler
            except OSError:
                continue
    raise AssertionError("could not fill the disk")


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
        "model": {"name": "resnet18"},  # checkpoints of 130 MB: the small disks below are sized for them (tmpfs: memory, unmounted after)
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


def space(tmp_path, config: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    data["method"] = {"name": "coteaching", "noise_rate": 0.2, "noise_rate_source": "given"}
    data["schedule"]["epochs"] = 2
    data["search"] = {"method.alpha": {"dist": "uniform", "low": 0.5, "high": 1.5}}
    data["tune"] = {
        "num_samples": 2,
        "max_concurrent_trials": 2,
        "baselines": ["asl"],
        "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 0},
        "resources": {"workers": 0, "cpus_per_worker": 1},
        "max_failures": 0,  # a retry on the full disk would fail the same way (and take a trial's start-up)
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tune_refuses_a_storage_without_room_before_writing(tmp_path, config):
    with small_disk(tmp_path / "disk", "40m") as disk:
        before = snapshot(disk)
        args = ["--space", space(tmp_path, config), "--storage", disk / "studies"]
        proc = subprocess.run(command("tune_main", *args), env=env(), capture_output=True, text=True, timeout=300)
        one_line(proc, f"--storage {disk / 'studies' / 'space'}", "MB free", "a checkpoint per trial (3, about")
        assert snapshot(disk) == before


def test_tune_on_a_storage_that_fills_stops_with_one_line_and_resumes(tmp_path, config):
    space(tmp_path, config)
    with small_disk(tmp_path / "disk", "1600m") as disk:
        study = disk / "studies" / "space"
        args = ["--space", "space.yaml", "--storage", "disk/studies"]  # relative, as typed: the line quotes them
        tune = subprocess.Popen(
            command("tune_main", *args), env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 300
        while not list(study.glob("trial_*/checkpoint_*/checkpoint.pt")) and tune.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        filler = fill(disk, leave_mb=20)  # another process takes the space while the trials train
        _, stderr = tune.communicate(timeout=600)
        assert tune.returncode == 2 and "Traceback" not in stderr, stderr[-3000:]
        last = stderr.strip().splitlines()[-1]  # Tune's own INFO lines come before it
        assert last.startswith(f"mhss-tune: error: --storage {study}: no space left on its disk") and len(last) < 300, last
        assert last.endswith("then: mhss-tune --space space.yaml --storage disk/studies --resume"), last
        assert not list(study.rglob("*.tmp")) and not [p for p in study.glob("*.json") if p.stat().st_size == 0]

        filler.unlink()
        resumed = subprocess.run(
            command("tune_main", *args, "--resume"), env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "3 trials, 0 errored" in resumed.stdout
        for trial in study.glob("trial_*"):
            epochs = [yaml.safe_load(line)["epoch"] for line in (trial / "result.json").read_text().splitlines()]
            assert epochs == [1, 2], (trial, epochs)
