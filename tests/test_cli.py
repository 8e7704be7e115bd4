"""mhss-train as a user runs it: a real subprocess, real files in the output folder."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

TRAIN = [sys.executable, "-c", "from mhss_ray.cli import train_main; train_main()"]


def run(args, env, **kw):
    return subprocess.run(TRAIN + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=600, **kw)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_train_writes_metrics_checkpoint_summary_and_resumes(tmp_path, tiny_yaml, cli_env):
    out = tmp_path / "run"
    proc = run(["--config", tiny_yaml, "--out", out, "--set", "schedule.epochs=2"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/2" in proc.stdout and "epoch 2/2" in proc.stdout  # progress, one line per epoch
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in ("test_mAP", "val_mAP", "test_AP_0", "test_f1_micro", "test_f1_macro", "images_per_s", "epoch_seconds", "noise_rate_0"):
        assert key in lines[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_mAP_final"] == lines[-1]["test_mAP"]
    assert 0 < summary["noise_rate_mean"] < 0.2  # naive 0.2 on entries: 2*floor(0.2*|pos_c|)/N
    assert (out / "summary.md").read_text().startswith("# Run summary")
    assert torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)["epoch"] == 2

    # Same folder again without --overwrite: refused, untouched.
    again = run(["--config", tiny_yaml, "--out", out], cli_env)
    assert_one_line_error(again, str(out), "--resume", "--overwrite")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    # A saved config that no longer matches the checkpoint is refused.
    cfg_file = out / "config.yaml"
    original = cfg_file.read_text()
    cfg_file.write_text(original.replace("epochs: 2", "epochs: 3"))
    assert_one_line_error(run(["--out", out, "--resume"], cli_env), "schedule.epochs differs from the checkpoint")
    cfg_file.write_text(original)


def test_killed_run_resumes_where_it_stopped(tmp_path, tiny_yaml, cli_env):
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    proc = subprocess.Popen(
        TRAIN + ["--config", str(tiny_yaml), "--out", str(out), "--set", "schedule.epochs=4"],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "checkpoint" / "checkpoint.pt").exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(metrics.read_text().splitlines())
    assert 1 <= done_before < 4, "the kill should land mid-run"

    resumed = run(["--out", out, "--resume"], cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "epoch 4/4" in resumed.stdout
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [1, 2, 3, 4]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4


def test_resume_of_a_run_that_died_before_its_first_checkpoint_starts_over(tmp_path, tiny_yaml, cli_env):
    out = tmp_path / "run"
    assert run(["--config", tiny_yaml, "--out", out, "--set", "schedule.epochs=1"], cli_env).returncode == 0
    (out / "checkpoint" / "checkpoint.pt").unlink()  # as if killed between the metric line and the checkpoint
    resumed = run(["--out", out, "--resume"], cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "starting at epoch 1" in resumed.stdout
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--set", "optim.lr=abc"], ["--set optim.lr=abc: optim.lr: expected a number in [1e-08, 10], got 'abc'"]),
        (["--set", "method.name=magic"], ["method.name: expected one of"]),
        (["--set", "model.name=no_such_net"], ["model.name: unknown timm model 'no_such_net'"]),
        (["--set", "model.pretrained_path=/nonexistent/w.pth"], ["model.pretrained_path", "/nonexistent/w.pth"]),
        (["--set", "bogus"], ["--set bogus: expected key=value"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, tiny_yaml, cli_env, args, needles):
    out = tmp_path / "out"
    proc = run(["--config", tiny_yaml, "--out", out, *args], cli_env)
    assert_one_line_error(proc, *needles)
    assert not out.exists()


def test_missing_config_and_resume_without_run(tmp_path, cli_env):
    assert_one_line_error(run(["--config", tmp_path / "nope.yaml", "--out", tmp_path / "o"], cli_env), "nope.yaml: no such file")
    assert_one_line_error(run(["--resume", "--out", tmp_path], cli_env), "holds no run to resume")
