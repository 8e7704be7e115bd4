"""The catalogue of user mistakes (docs/bad-input.md): each one, through the command a user types,
is a single line naming the key or file, exit code 2, no traceback, and no output left behind.

The CLIs are called in-process (their `main` functions exit like the installed commands); dataset
formats, corrupt images and run folders have their own tests (tests/data/test_bad_input.py,
tests/test_cli.py), listed in the same catalogue.
"""

import os
import socket

import pytest
import torch
import yaml

from mhss_ray.cli import analyze_main, train_main, tune_main
from tests.conftest import REPO, TINY

DEMO = str(REPO / "search_spaces" / "demo.yaml")


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def folder(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny(tmp_path, **changes) -> str:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        data.setdefault(section, {})[name] = value
    return write(tmp_path / "run.yaml", data)


def space(tmp_path, search: dict | None = None, **changes) -> str:
    """The demo space with `search` entries ({dotted key: spec}) and other keys (tune__metric=...) changed."""
    data = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    data["search"].update(search or {})
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return write(tmp_path / "space.yaml", data)


def truncated_checkpoint(tmp_path) -> list[str]:
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(TINY))
    (out / "checkpoint" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    return ["--resume", "--out", str(out)]


# (id, command, arguments built from tmp_path, text the one line must contain)
CASES = [
    # mhss-train: command line and config files
    ("train-no-config", train_main, lambda t: [], "--config FILE is required"),
    ("train-config-missing", train_main, lambda t: ["--config", str(t / "nope.yaml")], "nope.yaml: no such file"),
    (
        "train-malformed-yaml",
        train_main,
        lambda t: ["--config", write(t / "bad.yaml", "data: [1, 2\nseed: 3\n")],
        "bad.yaml: invalid YAML at line",
    ),
    (
        "train-yaml-not-a-mapping",
        train_main,
        lambda t: ["--config", write(t / "list.yaml", "- 1\n- 2\n")],
        "expected a mapping of config keys",
    ),
    ("train-unknown-key", train_main, lambda t: ["--config", tiny(t, method__alpah=1)], "method.alpah: unknown key"),
    ("train-wrong-type", train_main, lambda t: ["--config", tiny(t, data__batch_size="many")], "data.batch_size: expected an integer"),
    (
        "train-alpha-out-of-range",
        train_main,
        lambda t: ["--config", tiny(t, method__alpha=3)],
        "method.alpha: expected a number in [0, 2], got 3",
    ),
    (
        "train-theta-out-of-range",
        train_main,
        lambda t: ["--config", tiny(t, method__theta=1.5)],
        "method.theta: expected a number in [0, 1], got 1.5",
    ),
    (
        "train-eps-out-of-range",
        train_main,
        lambda t: ["--config", tiny(t, method__noise_rates=[0.1, 1.2])],
        "method.noise_rates[1]: expected a number in [0, 1], got 1.2",
    ),
    (
        "train-eps-wrong-length",
        train_main,
        lambda t: ["--config", tiny(t, method__name="mhss", method__noise_rate_source="given", method__noise_rates=[0.1] * 3)],
        "method.noise_rates: expected 10 values (one per class), got 3",
    ),
    ("train-bad-set", train_main, lambda t: ["--config", tiny(t), "--set", "method.alpha"], "--set method.alpha: expected key=value"),
    ("train-set-into-a-value", train_main, lambda t: ["--config", tiny(t), "--set", "seed.x=1"], "--set seed.x: seed is not a section"),
    (
        "train-unknown-model",
        train_main,
        lambda t: ["--config", tiny(t, model__name="resnet9000")],
        "model.name: unknown timm model 'resnet9000'",
    ),
    (
        "train-pretrained-missing",
        train_main,
        lambda t: ["--config", tiny(t, model__pretrained_path=str(t / "w.pth"))],
        "model.pretrained_path:",
    ),
    (
        "train-missing-data-root",
        train_main,
        lambda t: ["--config", tiny(t, data__name="sewerml", data__root=str(t / "none"))],
        "data.root:",
    ),
    (
        "train-unset-env-var",
        train_main,
        lambda t: ["--config", tiny(t, data__name="treesat", data__root="${MHSS_NO_SUCH_VAR}")],
        "environment variable MHSS_NO_SUCH_VAR is not set",
    ),
    ("train-resume-without-out", train_main, lambda t: ["--resume"], "--resume needs --out"),
    ("train-resume-empty-folder", train_main, lambda t: ["--resume", "--out", str(t)], "holds no run to resume"),
    ("train-truncated-checkpoint", train_main, truncated_checkpoint, "checkpoint.pt: unreadable checkpoint"),
    # mhss-tune: search-space files and flags
    ("tune-space-missing", tune_main, lambda t: ["--space", str(t / "nope.yaml")], "nope.yaml: no such file"),
    (
        "tune-unknown-tracker",
        tune_main,
        lambda t: ["--space", space(t, tune__callbacks=["comet"])],
        "tune.callbacks[0]: expected one of mlflow, wandb, got 'comet'",
    ),
    (
        "tune-unknown-dist",
        tune_main,
        lambda t: ["--space", space(t, search={"method.alpha": {"dist": "normal", "low": 0, "high": 1}})],
        "search.method.alpha.dist: expected one of",
    ),
    (
        "tune-alpha-range",
        tune_main,
        lambda t: ["--space", space(t, search={"method.alpha": {"dist": "uniform", "low": 0.5, "high": 3}})],
        "method.alpha: expected a number in [0, 2], got 3",
    ),
    (
        "tune-theta-range",
        tune_main,
        lambda t: ["--space", space(t, search={"method.theta": {"dist": "uniform", "low": 0, "high": 2}})],
        "method.theta: expected a number in [0, 1], got 2",
    ),
    (
        "tune-eps-range",
        tune_main,
        lambda t: ["--space", space(t, search={"method.noise_rates": {"per_class": True, "dist": "uniform", "low": 0, "high": 1.5}})],
        "method.noise_rates[0]: expected a number in [0, 1]",
    ),
    (
        "tune-point-wrong-length",
        tune_main,
        lambda t: ["--space", space(t, tune__search_alg__points_to_evaluate=[{"method.noise_rates": [0.1, 0.1]}])],
        "tune.search_alg.points_to_evaluate[0].method.noise_rates",
    ),
    (
        "tune-grid-with-hyperopt",
        tune_main,
        lambda t: ["--space", space(t, search={"method.alpha": {"dist": "grid", "values": [0.5, 1.0]}})],
        "grid is not supported with tune.search_alg.name hyperopt",
    ),
    (
        "tune-gpu-fraction-above-1",
        tune_main,
        lambda t: ["--space", space(t, tune__resources={"workers": 1, "gpu_per_worker": 1.5})],
        "tune.resources.gpu_per_worker: expected a fraction <= 1",
    ),
    (
        "tune-gpu-zero-several-workers",
        tune_main,
        lambda t: ["--space", space(t, tune__resources={"workers": 2, "gpu_per_worker": -1})],
        "tune.resources.gpu_per_worker: expected a number in [0, 8], got -1",
    ),
    (
        "tune-gpu-fraction-several-workers",
        tune_main,
        lambda t: ["--space", space(t, tune__resources={"workers": 2, "gpu_per_worker": 0.5})],
        "several workers need whole GPUs",
    ),
    ("tune-unknown-metric", tune_main, lambda t: ["--space", space(t, tune__metric="accuracy")], "tune.metric: expected one of"),
    (
        "tune-unknown-model",
        tune_main,
        lambda t: ["--space", space(t, model__name="resnet9000")],
        "model.name: unknown timm model 'resnet9000'",
    ),
    (
        "tune-resume-and-overwrite",
        tune_main,
        lambda t: ["--space", DEMO, "--resume", "--overwrite"],
        "--resume and --overwrite contradict each other",
    ),
    (
        "tune-resume-or-start-and-overwrite",
        tune_main,
        lambda t: ["--space", DEMO, "--resume-or-start", "--overwrite"],
        "--overwrite and --resume-or-start contradict each other",
    ),
    (
        "tune-resume-without-study",
        tune_main,
        lambda t: ["--space", DEMO, "--storage", str(t / "studies"), "--resume"],
        "holds no study to resume",
    ),
    (
        "tune-local-storage-remote-cluster",
        tune_main,
        lambda t: ["--space", DEMO, "--storage", str(t / "studies"), "--address", "10.0.0.9:6379"],
        "--shared-storage",
    ),
    # mhss-analyze
    ("analyze-no-study", analyze_main, lambda t: [str(folder(t / "not-a-study")), "--out", str(t / "analysis")], "holds no Tune study"),
    ("analyze-missing-folder", analyze_main, lambda t: [str(t / "nowhere"), "--out", str(t / "analysis")], "no such study folder"),
]


@pytest.mark.parametrize("name, main, args, expected", CASES, ids=[c[0] for c in CASES])
def test_user_mistake_is_one_line_exit_2_and_leaves_nothing(name, main, args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders (runs/...) would land here
    monkeypatch.delenv("MHSS_NO_SUCH_VAR", raising=False)
    argv = args(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    assert {p for p in tmp_path.rglob("*")} == before, "a mistake must not leave files behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU where there is none")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", tiny(tmp_path, runtime__device="cuda")])
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and err.strip().splitlines() == [err.strip()]
        and f"runtime.device: cuda requested but no GPU is visible on node {socket.gethostname()} (torch.cuda: " in err
        and "device_count 0" in err
    )
    assert not (tmp_path / "runs").exists()


def test_catalogue_is_documented():
    doc = (REPO / "docs" / "bad-input.md").read_text()
    for case in CASES:
        assert f"`{case[0]}`" in doc, f"{case[0]} missing from docs/bad-input.md"
    assert len(CASES) + 1 + len([line for line in doc.splitlines() if line.startswith("| `") and "tests/data" in line]) >= 30
    assert os.path.exists(REPO / "tests" / "data" / "test_bad_input.py")
