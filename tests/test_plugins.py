"""A method and a dataset registered from outside the package (here, in this file) run through
`mhss-train` and are checked and listed like the built-in ones; no file of the package is touched."""

import json

import numpy as np
import pytest
import torch
import yaml

from mhss_ray.cli import train_main
from mhss_ray.errors import UserError
from mhss_ray.data.base import DataBundle, InMemoryImages, Split
from mhss_ray.methods.base import Method, MethodInputs, Selection
from mhss_ray.registry import DATASETS, METHODS, register_dataset, register_method
from tests.conftest import REPO, TEST_MODEL

CLASSES = ["horizontal", "vertical", "dots"]


def stripes(n: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n grey images with any of three patterns drawn in: horizontal stripes, vertical stripes, dots."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    images = np.zeros((n, 1, size, size), dtype=np.uint8)
    images[labels[:, 0].astype(bool), :, ::4, :] += 80
    images[labels[:, 1].astype(bool), :, :, ::4] += 80
    images[labels[:, 2].astype(bool), :, 2::5, 2::5] += 90
    return torch.from_numpy(images), labels


def build_stripes(cfg) -> DataBundle:
    splits = [stripes(n, cfg.data.image_size, cfg.data.split_seed + i) for i, n in enumerate((96, 32, 32))]
    return DataBundle("toy-stripes", CLASSES, 1, *(Split(InMemoryImages(x, 0.2, 0.3), y) for x, y in splits))


class DropLoudest(Method):
    """One network that skips the highest-loss share of each class column (a one-network small-loss trick)."""

    def __init__(self, inputs: MethodInputs):
        super().__init__(inputs.observed, inputs.clean, inputs.loss_fn)
        self.share = inputs.cfg.method.alpha * 0.1

    def select(self, indices, logits):
        labels = self.observed[indices]
        loss = self.loss_fn(logits[0].detach(), labels)
        keep = loss <= torch.quantile(loss.float(), 1 - self.share, dim=0, keepdim=True)
        return [Selection(labels, keep)]


@pytest.fixture
def toy_entries():
    register_method("toy-drop-loudest", keys=("alpha",), labels={"method.alpha": "α"}, summary="test only")(DropLoudest)
    register_dataset("toy-stripes", build_stripes, lambda cfg: list(CLASSES), keys=("image_size",), summary="test only")
    yield
    METHODS.remove("toy-drop-loudest")
    DATASETS.remove("toy-stripes")


def test_a_method_and_a_dataset_registered_outside_the_package_train_through_mhss_train(toy_entries, tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "toy-stripes", "image_size": 16, "batch_size": 32},
                "noise": {"mode": "naive", "rate": 0.2},
                "model": {"name": TEST_MODEL},
                "method": {"name": "toy-drop-loudest", "alpha": 2.0},
                "schedule": {"epochs": 1},
                "runtime": {"threads": 1},
            }
        )
    )
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(config), "--out", str(tmp_path / "run")])
    assert exit_.value.code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    # the method's selection was measured: it kept 80% of the entries, so its recall is below 1
    assert 0.5 < rows[0]["selection_recall"] < 0.95
    assert {f"val_AP_{c}" for c in CLASSES} <= set(rows[0])  # the per-class metrics are named by the dataset's classes
    assert "toy-stripes" in (tmp_path / "run" / "config.yaml").read_text()
    # mhss-audit does not guess what a plugin's selection means (it once listed every disagreement as rejected):
    # a method that neither corrects nor says what it deems unreliable (Method.suspected) has no suspects
    from mhss_ray.cli import audit_main

    with pytest.raises(SystemExit) as exit_:
        audit_main(["--from", str(tmp_path / "run"), "--out", str(tmp_path / "suspects.csv")])
    assert exit_.value.code == 0
    assert "0 suspected label errors" in capsys.readouterr().out

    def broken(self, losses, observed):  # a plugin's own code that raises: one line naming it and its file
        raise KeyError("class 7")

    DropLoudest.suspected = broken
    try:
        with pytest.raises(SystemExit) as exit_:
            audit_main(["--from", str(tmp_path / "run"), "--out", str(tmp_path / "again.csv")])
    finally:
        del DropLoudest.suspected
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert f"method toy-drop-loudest: suspected ({__file__}) raised KeyError: 'class 7'" in err and not (tmp_path / "again.csv").exists()


def test_a_plugin_whose_check_search_raises_is_one_line(tmp_path):
    from mhss_ray.tune.space import load_space

    def check_search(dims, cfg):
        return [1 / 0]

    register_method("toy-checks", keys=("alpha",), check_search=check_search, summary="test only")(DropLoudest)
    try:
        space = tmp_path / "space.yaml"
        space.write_text(
            yaml.safe_dump({"method": {"name": "toy-checks"}, "search": {"method.alpha": {"dist": "uniform", "low": 0.5, "high": 1}}})
        )
        with pytest.raises(UserError, match=f"method toy-checks: check_search \\({__file__}\\) raised ZeroDivisionError: division by zero"):
            load_space(str(space), [], plan_only=True)
    finally:
        METHODS.remove("toy-checks")


def test_registered_names_are_checked_and_listed_like_the_built_in_ones(toy_entries, tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"method": {"name": "toy-drop-loudst"}}))
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    names = METHODS.names()
    assert names[-1] == "toy-drop-loudest"  # listed like the built-in ones, after them
    assert f"method.name: expected one of {', '.join(names)}, got 'toy-drop-loudst'" in err
    assert not (tmp_path / "run").exists()


class OneAnswerForTwo(Method):
    """Two networks, and answers: one Selection only (the second network would never train), or a float mask."""

    num_networks = 2

    def __init__(self, inputs: MethodInputs):
        super().__init__(inputs.observed, inputs.clean, inputs.loss_fn)
        self.wrong = inputs.cfg.method.alpha

    def select(self, indices, logits):
        labels = self.observed[indices]
        if self.wrong == 1.0:
            return [Selection(labels)]
        return [Selection(labels, torch.ones_like(labels, dtype=torch.float32)) for _ in logits]


def test_a_plugin_whose_selections_do_not_fit_its_networks_is_refused_at_its_first_step(tmp_path, capsys):
    register_method("toy-one-answer", num_networks=2, keys=("alpha",), summary="test only")(OneAnswerForTwo)
    try:
        for alpha, words in ((1.0, "returned 1 selections for its 2 networks"), (2.0, "selection 0's mask is torch.float32")):
            config = tmp_path / f"one-{alpha}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "data": {"image_size": 16, "n_train": 64, "n_val": 16, "n_test": 16, "batch_size": 32},
                        "model": {"name": TEST_MODEL},
                        "method": {"name": "toy-one-answer", "alpha": alpha},
                        "schedule": {"epochs": 1},
                        "runtime": {"threads": 1},
                    }
                )
            )
            if alpha == 2.0:
                (tmp_path / f"run-{alpha}").mkdir()
            with pytest.raises(SystemExit) as exit_:
                train_main(["--config", str(config), "--out", str(tmp_path / f"run-{alpha}")])
            err = capsys.readouterr().err.strip()
            assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
            assert f"method toy-one-answer ({__file__}): select()" in err and words in err, err
            if alpha == 1.0:
                assert not (tmp_path / f"run-{alpha}").exists()  # nothing half-written
            else:  # an empty folder the user gave as --out stays, empty
                assert (tmp_path / f"run-{alpha}").is_dir() and not any((tmp_path / f"run-{alpha}").iterdir())
    finally:
        METHODS.remove("toy-one-answer")


def test_a_forgetting_plugin_that_cannot_estimate_its_rates_is_refused_estimated_rates(tmp_path, capsys):
    """forgets=True without estimates_rates, run with noise_rate_source: estimated, was trained without ever
    forgetting (its rates stayed 0); now the config is refused in one line."""
    register_method("toy-forgets", forgets=True, keys=("alpha",), summary="test only")(DropLoudest)
    try:
        config = tmp_path / "estimated.yaml"
        config.write_text(yaml.safe_dump({"method": {"name": "toy-forgets", "noise_rate_source": "estimated"}}))
        with pytest.raises(SystemExit) as exit_:
            train_main(["--config", str(config), "--out", str(tmp_path / "run")])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and len(err.splitlines()) == 1
        assert "method.noise_rate_source: estimated: toy-forgets cannot estimate its noise rates" in err
        assert not (tmp_path / "run").exists()
    finally:
        METHODS.remove("toy-forgets")
    assert all(METHODS.get(n).estimates_rates for n in ("coteaching", "coselfie", "mhss"))


def test_mhss_train_list_shows_every_registered_method_and_dataset(toy_entries, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main(["--list"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.strip().startswith("keys:")]
    assert names == [*METHODS.names(), *DATASETS.names()]
    assert "toy-drop-loudest" in names and "toy-stripes" in names
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "2 networks; CoSELFIE + class-dependent noise rates" in lines["mhss"]
    assert "1 network, 2 views;" in lines["disc"] and "1 network; test only" in lines["toy-drop-loudest"]


# ----------------------------------------------------------------------------- plugins in their own files


@pytest.mark.slow
def test_a_method_and_a_dataset_each_in_one_file_train_are_searched_and_audited(tmp_path):
    """tests/plugins/toy_agreement.py (two networks, its own key method.keep_share) and tests/plugins/pipe_labels.py
    (image files with '|'-separated labels, its own keys data.labels_file and data.separator) are one file each,
    loaded by MHSS_PLUGINS: a study searches keep_share, mhss-train trains them, mhss-audit lists what the
    method itself deems unreliable."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from mhss_ray.data import fixtures
    from tests.conftest import REPO
    from tests.studies import result_rows

    data = tmp_path / "pipes"
    _, _, frame = fixtures.write_manifest(data, n=96, size=16, classes=("crack", "root", "deposit"), label_list=True, with_split=False)
    pd.DataFrame({"file": frame["file"], "labels": frame["labels"].str.replace(";", "|")}).to_csv(data / "pipes.csv", index=False)
    base = {
        "seed": 0,
        "data": {"name": "pipe-labels", "root": str(data), "labels_file": "pipes.csv", "separator": "|", "image_size": 16},
        "noise": {"mode": "naive", "rate": 0.2},
        "model": {"name": TEST_MODEL},
        "method": {"name": "toy-agreement", "keep_share": 0.8},
        "schedule": {"epochs": 2},
        "runtime": {"device": "cpu", "threads": 1},
    }
    space = {
        **base,
        "search": {"method.keep_share": {"dist": "uniform", "low": 0.6, "high": 0.95}},
        "tune": {
            "num_samples": 2, "max_concurrent_trials": 2, "baselines": [], "scheduler": {"name": "fifo"},
            "search_alg": {"name": "random", "seed": 0}, "resources": {"workers": 0, "cpus_per_worker": 1},
        },
    }  # fmt: skip
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "toy_space.yaml").write_text(yaml.safe_dump(space))
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        MHSS_PLUGINS="tests.plugins.toy_agreement, tests.plugins.pipe_labels",
        RAY_AUTH_MODE="disabled",
    )

    def cli(main: str, *args):
        code = f"import sys; from mhss_ray.cli import {main}; sys.exit({main}())"
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=tmp_path, capture_output=True, text=True)

    listed = cli("train_main", "--list")
    assert "toy-agreement" in listed.stdout and "method.keep_share" in listed.stdout and "data.separator" in listed.stdout

    tune = cli("tune_main", "--space", "toy_space.yaml", "--storage", tmp_path / "studies")
    assert tune.returncode == 0, tune.stdout[-3000:] + tune.stderr[-3000:]
    rows = result_rows(tmp_path / "studies" / "toy_space")
    shares = {trial: r[-1]["config"]["method.keep_share"] for trial, r in rows.items()}
    assert len(shares) == 2 and len(set(shares.values())) == 2 and all(0.6 <= s <= 0.95 for s in shares.values()), shares
    assert all([row["epoch"] for row in r] == [1, 2] for r in rows.values())

    train = cli("train_main", "--config", "toy.yaml", "--out", tmp_path / "run")
    assert train.returncode == 0, train.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["method"]["keep_share"] == 0.8 and saved["data"]["separator"] == "|"  # its own keys, saved in its sections

    audit = cli("audit_main", "--from", tmp_path / "run", "--out", tmp_path / "suspects.csv")
    assert audit.returncode == 0, audit.stderr[-3000:]
    table = pd.read_csv(tmp_path / "suspects.csv")
    assert len(table) > 0 and table["rejected"].all() and not table["corrected"].any()
    # what the method deems unreliable: beyond the kept share of its column in both networks
    assert (table["loss_quantile"] > 0.8 - 1e-6).all(), table["loss_quantile"].min()
    assert table["image"].str.startswith(str(data / "images" / "img_")).all()  # the file the entry belongs to


def test_a_plugin_that_cannot_be_loaded_is_one_line(tmp_path):
    """Every way a plugin module fails to load ends in one line naming it and what it did (was: only a missing
    module; the rest were 40-55-line tracebacks, under mhss-tune --dry-run too)."""
    import os
    import subprocess
    import sys

    (tmp_path / "raises.py").write_text("raise RuntimeError('no licence server')\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "clash.py").write_text(
        "from mhss_ray.registry import register_method\nregister_method('asl', summary='mine')(lambda inputs: None)\n"
    )
    cases = {
        "my_plugins.nowhere": "MHSS_PLUGINS: my_plugins.nowhere: cannot import it (No module named 'my_plugins')",
        "raises": f"MHSS_PLUGINS: raises ({tmp_path / 'raises.py'}): raised RuntimeError while importing: no licence server",
        "broken": f"MHSS_PLUGINS: broken: cannot import it: invalid syntax ({tmp_path / 'broken.py'}, line 1)",
        "clash": f"MHSS_PLUGINS: clash ({tmp_path / 'clash.py'}): method 'asl' is registered twice",
        str(tmp_path / "raises.py"): f"MHSS_PLUGINS: {tmp_path / 'raises.py'} is a file; give its module name (raises)",
    }
    train = "import sys; from mhss_ray.cli import train_main; sys.exit(train_main())"
    tune = "import sys; from mhss_ray.cli import tune_main; sys.exit(tune_main())"
    runs = {}
    for module in cases:
        env = dict(os.environ, MHSS_PLUGINS=module, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
        runs[module] = subprocess.Popen([sys.executable, "-c", train, "--list"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    env = dict(os.environ, MHSS_PLUGINS="clash", PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    space = REPO / "search_spaces" / "demo.yaml"
    dry = subprocess.Popen(
        [sys.executable, "-c", tune, "--space", str(space), "--dry-run"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    for module, proc in [*runs.items(), ("clash", dry)]:
        err = proc.communicate(timeout=300)[1]
        lines = err.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in err, (module, err)
        assert cases[module] in lines[0], (module, lines[0])


ONE_ANSWER = """
import torch
from mhss_ray.methods.base import Method, Selection
from mhss_ray.registry import register_method


class OneAnswer(Method):
    num_networks = 2

    def __init__(self, inputs):
        super().__init__(inputs.observed, inputs.clean, inputs.loss_fn)

    def select(self, indices, logits):
        return [Selection(self.observed[indices])]  # one answer for two networks


register_method("one-answer", num_networks=2, summary="test only")(OneAnswer)
"""


def test_a_study_of_a_plugin_that_answers_wrong_ends_in_one_line_and_its_analysis_says_so(tmp_path):
    """Every trial stops at its first step on the plugin's wrong answer: the study ends with that one line
    (was: every trial's Ray traceback, then rc 1), and mhss-analyze writes sentences where the tables of
    best trials would be (was: broken tables)."""
    import os
    import subprocess
    import sys

    (tmp_path / "one_answer.py").write_text(ONE_ANSWER)
    space = {
        "data": {"image_size": 16, "n_train": 64, "n_val": 16, "n_test": 16, "batch_size": 32},
        "model": {"name": TEST_MODEL},
        "method": {"name": "one-answer"},
        "schedule": {"epochs": 2},
        "runtime": {"device": "cpu", "threads": 1},
        "search": {"optim.lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-2}},
        "tune": {
            "num_samples": 1, "max_concurrent_trials": 1, "baselines": [], "scheduler": {"name": "fifo"}, "max_failures": 0,
            "search_alg": {"name": "random", "seed": 0}, "resources": {"workers": 0, "cpus_per_worker": 1},
        },
    }  # fmt: skip
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO), *sys.path]), MHSS_PLUGINS="one_answer", RAY_AUTH_MODE="disabled"
    )

    def cli(main: str, *args):
        code = f"import sys; from mhss_ray.cli import {main}; sys.exit({main}())"
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=tmp_path, capture_output=True, text=True)

    tune = cli("tune_main", "--space", "space.yaml", "--storage", tmp_path / "studies")
    lines = tune.stderr.strip().splitlines()  # Ray's own INFO lines, then ours
    assert tune.returncode == 2 and "Traceback" not in tune.stdout + tune.stderr, tune.stdout[-2000:] + tune.stderr[-3000:]
    assert (
        lines[-1].startswith("mhss-tune: error: every trial stopped on:")
        and f"every trial stopped on: method one-answer ({tmp_path / 'one_answer.py'}): select() returned 1 selections" in lines[-1]
    )
    analyze = cli("analyze_main", tmp_path / "studies" / "space", "--out", tmp_path / "analysis")
    assert analyze.returncode == 0, analyze.stderr[-3000:]
    summary = (tmp_path / "analysis" / "summary.md").read_text()
    assert "1 errored" in summary and "None: no trial reported" in summary
    assert "|  |" not in summary and "\n|\n" not in summary, summary
    # `make notebook` on it: one line, not a notebook that stops in its third cell
    ready = subprocess.run(
        [sys.executable, "-m", "mhss_ray.analysis.notebook_ready"],
        env={**env, "MHSS_STUDY": str(tmp_path / "studies" / "space")}, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert ready.returncode == 2 and len(ready.stderr.strip().splitlines()) == 1, ready.stderr
    assert "no trial has reported an epoch yet (1 errored); nothing to explore" in ready.stderr
