"""Search-space files: expansion, trial configs and key-path errors (mhss_ray.tune.space)."""

import subprocess
import sys

import pytest
import yaml
from ray.tune.search.sample import Categorical, Float, Integer

from mhss_ray.errors import UserError
from mhss_ray.tune.space import load_space

from ..conftest import REPO

SPACE = {
    "data": {"n_train": 400},
    "noise": {"mode": "complex", "rate": 0.2},
    "method": {"name": "mhss"},
    "schedule": {"epochs": 6},
    "search": {
        "method.alpha": {"dist": "uniform", "low": 0.25, "high": 2.0},
        "method.theta": {"dist": "loguniform", "low": 0.01, "high": 0.3},
        "method.noise_rates": {"per_class": True, "dist": "uniform", "low": 0.0, "high": 0.45},
        "method.q": {"dist": "qrandint", "low": 3, "high": 8, "q": 1},
        "optim.lr": {"dist": "choice", "values": ["1e-3", 3.0e-4]},
    },
    "tune": {
        "num_samples": 6,
        "scheduler": {"name": "asha", "grace_period": 2},
        "search_alg": {
            "name": "hyperopt",
            "n_initial_points": 3,
            "points_to_evaluate": [
                {"method.alpha": 1.0, "method.noise_rates": [0.1] * 10, "method.theta": 0.1, "method.q": 5, "optim.lr": "1e-3"}
            ],
        },
        "resources": {"workers": 1, "gpu_per_worker": 0.25},
    },
}


def write(tmp_path, data, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edited(**changes):
    import copy

    data = copy.deepcopy(SPACE)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def test_space_expands_per_class_and_builds_trial_configs(tmp_path):
    spec = load_space(write(tmp_path, SPACE))
    keys = [d.key for d in spec.dimensions]
    assert keys[:2] == ["method.alpha", "method.theta"] and keys[-2:] == ["method.q", "optim.lr"]
    assert [k for k in keys if k.startswith("method.noise_rates[")] == [f"method.noise_rates[{i}]" for i in range(10)]
    space = spec.param_space()
    assert (
        isinstance(space["method.alpha"], Float) and isinstance(space["method.q"], Integer) and isinstance(space["optim.lr"], Categorical)
    )
    assert spec.num_trials == 6 and spec.max_t == 6 and spec.trials_per_gpu() == 4
    assert spec.trial_resources() == {"CPU": 1.0, "GPU": 0.25}
    assert spec.driver_resources()["cpu"] == 0  # a Ray Train trial's driver only waits on its worker
    point = {
        "method.alpha": 0.7,
        "method.theta": 0.02,
        "method.q": 4,
        "optim.lr": 3e-4,
        **{f"method.noise_rates[{i}]": i / 100 for i in range(10)},
    }
    cfg = spec.trial_config(point)
    assert (cfg.method.alpha, cfg.method.q, cfg.optim.lr, cfg.method.noise_rate_source) == (0.7, 4, 3e-4, "given")
    assert cfg.method.noise_rates == [i / 100 for i in range(10)] and cfg.data.n_train == 400
    # per-class lists in points_to_evaluate become the flat keys of the space
    assert spec.tune.search_alg.points_to_evaluate == [
        {
            "method.alpha": 1.0,
            **{f"method.noise_rates[{i}]": 0.1 for i in range(10)},
            "method.theta": 0.1,
            "method.q": 5,
            "optim.lr": "1e-3",
        }
    ]
    # one number stands for every class
    data = edited(
        **{
            "tune/search_alg": {
                "name": "hyperopt",
                "points_to_evaluate": [{**SPACE["tune"]["search_alg"]["points_to_evaluate"][0], "method.noise_rates": 0.2}],
            }
        }
    )
    assert load_space(write(tmp_path, data, "scalar.yaml")).tune.search_alg.points_to_evaluate[0]["method.noise_rates[9]"] == 0.2


def test_grid_multiplies_trials_with_random_search(tmp_path):
    data = edited(**{"search/method.name": {"dist": "grid", "values": ["mhss", "coselfie"]}, "tune/search_alg": {"name": "random"}})
    spec = load_space(write(tmp_path, data))
    assert spec.grid_size == 2 and spec.num_trials == 12


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"search/method.alph": {"dist": "uniform", "low": 0, "high": 1}}, "search.method.alph: unknown config key"),
        ({"search/method": {"dist": "uniform", "low": 0, "high": 1}}, "search.method: is a whole section"),
        ({"search/method.alpha": {"dist": "normal", "low": 0, "high": 1}}, "search.method.alpha.dist: expected one of uniform"),
        ({"search/method.alpha": {"dist": "uniform", "low": 0}}, "search.method.alpha.high: required by uniform"),
        (
            {"search/method.alpha": {"dist": "uniform", "low": 0, "high": 1, "step": 2}},
            "search.method.alpha.step: not a parameter of uniform",
        ),
        ({"search/method.alpha": {"dist": "uniform", "low": 1, "high": 0.5}}, "search.method.alpha: low (1) must be below high (0.5)"),
        (
            {"search/method.alpha": {"dist": "uniform", "low": 0.5, "high": 3}},
            "search.method.alpha.high: method.alpha: expected a number in [0, 2], got 3",
        ),
        ({"search/method.alpha": {"dist": "uniform", "low": "abc", "high": 1}}, "search.method.alpha.low: expected a number, got 'abc'"),
        ({"search/method.theta": {"dist": "loguniform", "low": 0, "high": 0.3}}, "search.method.theta.low: loguniform needs low > 0"),
        (
            {"search/method.noise_rates": {"per_class": True, "dist": "uniform", "low": 0, "high": 1.5}},
            "search.method.noise_rates.high: method.noise_rates[0]: expected a number in [0, 1], got 1.5",
        ),
        (
            {"search/method.alpha": {"per_class": True, "dist": "uniform", "low": 0, "high": 1}},
            "search.method.alpha.per_class: only method.noise_rates",
        ),
        (
            {"search/optim.name": {"dist": "choice", "values": ["adam", "lion"]}},
            "search.optim.name.values: optim.name: expected one of adam, adamw, sgd, got 'lion'",
        ),
        (
            {"search/method.name": {"dist": "grid", "values": ["mhss"]}},
            "search.method.name.dist: grid is not supported with tune.search_alg.name hyperopt",
        ),
        ({"tune/resources": {"workers": 2, "gpu_per_worker": 0.5}}, "tune.resources.gpu_per_worker: 0.5 GPUs per worker with 2 workers"),
        (
            {"tune/resources": {"workers": 1, "gpu_per_worker": 1.5}},
            "tune.resources.gpu_per_worker: expected a fraction <= 1 or a whole number, got 1.5",
        ),
        (
            {"tune/resources": {"workers": 1, "gpu_per_worker": 0}, "tune/num_samples": 0},
            "tune.num_samples: expected an integer in [1, 1e+06], got 0",
        ),
        ({"tune/metric": "accuracy"}, "tune.metric: expected one of val_mAP"),
        ({"method/name": "disc", "tune/resources": {"workers": 2}}, "method.mixup_alpha: DISC's mixup needs the whole batch on one worker"),
        ({"tune/schedulr": {}}, "tune.schedulr: unknown key"),
        (
            {"tune/search_alg": {"points_to_evaluate": [{"method.beta": 1}]}},
            "tune.search_alg.points_to_evaluate[0].method.beta: not a search key",
        ),
        (
            {"tune/search_alg": {"points_to_evaluate": [{"method.noise_rates": [0.1, 0.2]}]}},
            "points_to_evaluate[0].method.noise_rates: expected one number or a list of 10",
        ),
        (
            {"method/gce_q": 5},
            "method.gce_q: expected a number in [0.01, 1], got 5",
        ),  # (a searched key's base value never runs: not checked)
        ({"search": [1, 2]}, "search: expected a mapping of config keys to distributions"),
        ({"tune/baselines": ["asl", "selfie"]}, "tune.baselines[1]: expected one of asl, asl-clean"),
        ({"tune/baselines": ["asl", "asl"]}, "tune.baselines[1]: asl is listed twice"),
        (
            {
                "tune/baselines": ["coselfie"],
                "method/warmup": 6,
                "search/method.warmup": {"dist": "randint", "low": 5, "high": 6},
                "tune/search_alg": {"name": "random"},
            },
            "tune.baselines[0]: coselfie on the base config: method.warmup: 6 warm-up epochs",
        ),  # searched, the base's 6 never runs, except in the arm
        (
            {
                "tune/baselines": ["asl"],
                "search/method.name": {"dist": "grid", "values": ["mhss", "coselfie"]},
                "tune/search_alg": {"name": "random"},
            },
            "tune.baselines: not with grid dimensions",
        ),
    ],
)
def test_bad_spaces_name_the_file_and_key(tmp_path, changes, message):
    with pytest.raises(UserError) as exc:
        load_space(write(tmp_path, edited(**changes)))
    text = str(exc.value)
    assert text.startswith(str(tmp_path / "space.yaml") + ": ") and message in text, text


def test_baseline_arms_run_the_base_config_as_written(tmp_path):
    """An arm is its method on the base config as the file gives it: a searched key keeps the file's
    value there (the searched trials never run it); the arms add to the trials."""
    data = edited(
        **{
            "tune/baselines": ["asl", "coteaching"],
            "optim": {"lr": 5e-4},
            "search/optim.lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-2},
        }
    )
    data["tune"]["search_alg"]["points_to_evaluate"][0]["optim.lr"] = 1e-3
    spec = load_space(write(tmp_path, data))
    assert spec.num_trials == 6 + 2 and "baseline arms: asl, coteaching" in spec.describe()
    asl = spec.trial_config({"baseline": "asl"})
    cot = spec.trial_config({"baseline": "coteaching"})
    assert (asl.method.name, cot.method.name) == ("asl", "coteaching")
    assert asl.optim.lr == cot.optim.lr == 5e-4 and asl.data.n_train == 400 and asl.noise.mode == "complex"
    assert (
        spec.trial_config({"baseline": "asl", "method.alpha": None, "optim.lr": None}).optim.lr == 5e-4
    )  # an arm's point: None for the searched keys
    searched = {"method.alpha": 0.5, "optim.lr": 1e-3, "method.theta": 0.1, "method.q": 5}
    assert (
        spec.trial_config(searched).method.name == spec.trial_config({**searched, "baseline": None}).method.name == "mhss"
    )  # random search: None


def test_baseline_arms_searcher_hands_out_the_arms_first_and_survives_a_restore(tmp_path):
    from ray.tune.search.hyperopt import HyperOptSearch
    from ray.tune.search.search_generator import SearchGenerator

    from mhss_ray.tune.baselines import BaselineArms

    spec = load_space(write(tmp_path, edited(**{"tune/baselines": ["asl", "coteaching"]})))
    keys = [d.key for d in spec.dimensions]
    searcher = BaselineArms(HyperOptSearch(random_state_seed=0), spec.tune.baselines, keys)
    searcher.set_search_properties("val_mAP", "max", spec.param_space())
    assert searcher.suggest("t1") == {"baseline": "asl", **dict.fromkeys(keys)}
    searcher.on_trial_complete("t1", {"val_mAP": 50.0})  # kept from HyperOpt: it is no point of its space
    SearchGenerator(searcher).save_to_dir(str(tmp_path), "s")  # as Tune saves the experiment state
    restored = BaselineArms(HyperOptSearch(random_state_seed=0), spec.tune.baselines, keys)
    restored.set_search_properties("val_mAP", "max", spec.param_space())
    SearchGenerator(restored).restore_from_dir(str(tmp_path))
    assert restored.suggest("t2") == {"baseline": "coteaching", **dict.fromkeys(keys)}
    point = restored.suggest("t3")
    assert "baseline" not in point and 0.25 <= point["method.alpha"] <= 2.0


def test_overrides_reach_base_config_and_tune_block(tmp_path):
    spec = load_space(write(tmp_path, SPACE), ["schedule.epochs=9", "tune.num_samples=3", "tune.name=mine"])
    assert spec.base_config.schedule.epochs == 9 and spec.max_t == 9 and spec.num_trials == 3 and spec.name == "mine"


def test_mhss_tune_dry_run_prints_the_study_and_starts_nothing(tmp_path, cli_env):
    path = write(tmp_path, SPACE)

    def run(*a):
        cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", *map(str, a)]
        return subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)

    proc = run("--space", path, "--dry-run", "--storage", tmp_path / "studies")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "search (14 dimensions)" in out and "method.noise_rates[9]" in out and "qrandint(3, 8, 1)" in out
    assert "trials: 6 (num_samples 6" in out and "4 trials share one GPU" in out and "ASHA on epoch, max_t 6, grace_period 2" in out
    assert not (tmp_path / "studies").exists()
    bad = run(
        "--space", write(tmp_path, edited(**{"search/method.alpha": {"dist": "uniform", "low": 0.5, "high": 3}}), "bad.yaml"), "--dry-run"
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "bad.yaml: search.method.alpha.high" in bad.stderr
    assert (
        run("--space", path, "--resume", "--overwrite").stderr.strip()
        == "mhss-tune: error: --resume and --overwrite contradict each other; pick one"
    )
    nothing = run("--space", path, "--storage", tmp_path / "empty", "--resume")  # refused before Ray starts
    assert nothing.returncode == 2 and nothing.stderr.strip().endswith("empty/space: holds no study to resume")
    assert "Started a local Ray instance" not in nothing.stdout + nothing.stderr and not (tmp_path / "empty").exists()


@pytest.mark.parametrize("name, classes", [("ucmerced", 17), ("treesat", 15), ("sewerml", 17)])
def test_dry_run_plans_a_paper_study_without_its_data_and_says_so(name, classes, tmp_path, cli_env):
    """The plan of a paper space before its dataset is there (a new user reading the plan first): a warning
    line, the published classes; the study itself is refused with a line pointing to the fixtures."""
    from tests.conftest import REPO

    space = REPO / "search_spaces" / f"{name}.yaml"
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(space)]
    sets = ["--set", f"data.root={tmp_path / 'absent'}", "--storage", str(tmp_path / "studies")]
    plan = subprocess.run([*cmd, *sets, "--dry-run"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    first = plan.stdout.splitlines()[0]
    assert first.startswith("warning: data.root:") and f"the {classes} published classes of {name}" in first
    assert f"study {name}" in plan.stdout and "trials:" in plan.stdout
    study = subprocess.run([*cmd, *sets], env=cli_env, capture_output=True, text=True, timeout=120)
    assert study.returncode == 2 and len(study.stderr.strip().splitlines()) == 1
    assert f"python -m mhss_ray.data.fixtures {name} FOLDER" in study.stderr
    assert not (tmp_path / "studies").exists()


def test_the_demo_space_is_valid_and_studies_mhss(cli_env):
    from tests.conftest import REPO

    spec = load_space(REPO / "search_spaces" / "demo.yaml")
    keys = [d.key for d in spec.dimensions]
    assert spec.base_config.method.name == "mhss" and spec.base_config.data.name == "digits-mosaic"
    assert keys[:2] == ["method.alpha", "method.theta"] and keys[2:12] == [f"method.noise_rates[{i}]" for i in range(10)]
    assert spec.tune.scheduler.name == "asha" and spec.tune.search_alg.name == "hyperopt" and spec.trials_per_gpu() is None


@pytest.mark.parametrize("name, env", [("ucmerced", "UCMERCED_ROOT"), ("treesat", "TREESAT_ROOT"), ("sewerml", "SEWERML_ROOT")])
def test_dataset_spaces_read_their_folder_from_set_or_environment(tmp_path, monkeypatch, name, env):
    from mhss_ray.data import fixtures

    fixtures.WRITERS[name](tmp_path)
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(UserError, match=f"{name}.yaml: data.root: .*data/{name}: no such folder"):
        load_space(REPO / "search_spaces" / f"{name}.yaml")
    monkeypatch.chdir(tmp_path.parent)
    relative = load_space(REPO / "search_spaces" / f"{name}.yaml", [f"data.root={tmp_path.name}"])
    assert relative.base_config.data.root == str(tmp_path)  # absolute: trials run in their own folders
    by_set = load_space(REPO / "search_spaces" / f"{name}.yaml", [f"data.root={tmp_path}"])
    monkeypatch.setenv(env, str(tmp_path))
    by_env = load_space(REPO / "search_spaces" / f"{name}.yaml")
    assert by_set.base_config.data.root == by_env.base_config.data.root == str(tmp_path)
    cfg = by_env.base_config
    assert (cfg.model.name, cfg.data.image_size, cfg.optim.name, cfg.schedule.epochs) == ("tresnet_m", 224, "adam", 30)
    # alpha scales the rates each trial estimates: one dimension, not one per class of the dataset
    assert cfg.method.noise_rate_source == "estimated" and len(by_env.class_names) > 10
    assert not [d for d in by_env.dimensions if d.key.startswith("method.noise_rates[")]
    assert "method.alpha" in {d.key for d in by_env.dimensions}
