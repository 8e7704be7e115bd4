import pytest

from mhss_ray.config import RunConfig, apply_overrides, from_dict, load_run_config
from mhss_ray.errors import UserError
from mhss_ray.registry import DATASETS, METHODS

from .conftest import REPO


def _error(data) -> str:
    with pytest.raises(UserError) as exc:
        from_dict(RunConfig, data)
    return str(exc.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"optim": {"lr": "abc"}}, "optim.lr: expected a number in [1e-08, 10], got 'abc'"),
        ({"optim": {"lr": -1}}, "optim.lr: expected a number in [1e-08, 10], got -1"),
        ({"data": {"batch_size": 2.5}}, "data.batch_size: expected an integer in [1, 65536], got 2.5"),
        ({"data": {"batch_size": True}}, "data.batch_size: expected an integer in [1, 65536], got true"),
        ({"data": {"nope": 1}}, "data.nope: unknown key (known keys: name, root,"),
        ({"nope": {}}, "nope: unknown key"),
        ({"method": {"name": "magic"}}, f"method.name: expected one of {', '.join(METHODS.names())}, got 'magic'"),
        ({"model": {"ema": "yes"}}, "model.ema: expected true or false, got 'yes'"),
        ({"data": {"base_split": [0.5, "x", 0.2]}}, "data.base_split[1]: expected a number, got 'x'"),
        ({"data": {"base_split": [0.5, 0.5]}}, "data.base_split: expected three positive fractions that sum to 1"),
        ({"noise": 3}, "noise: expected a mapping, got 3"),
        ({"model": {"name": ""}}, "model.name: expected a non-empty string"),
        ({"data": {"name": "imagenet"}}, f"data.name: expected one of {', '.join(DATASETS.names())}, got 'imagenet'"),
        ({"data": {"bands": ["R", "G", "X"]}}, "data.bands: expected distinct bands of IR, G, B, R, got [R, G, X]"),
        ({"data": {"split": [0.8, 0.1]}}, "data.split: expected train/val/test fractions"),
        ({"data": {"std": [0.2, 0, 0.2]}}, "data.std: expected one positive number per channel"),
        ({"data": {"class_weights": {"RB": -1}}}, "data.class_weights.RB: expected a number >= 0, got -1"),
        ({"data": {"on_bad_image": "ignore"}}, "data.on_bad_image: expected one of error, skip, got 'ignore'"),
        ({"data": {"root": "${MHSS_SURELY_UNSET_VAR}/x"}}, "data.root: environment variable MHSS_SURELY_UNSET_VAR is not set"),
        ({"noise": {"mode": "naive", "clean_subset": "v.csv"}}, "noise.clean_subset: only used with mode: real"),
    ],
)
def test_errors_name_the_key_path(data, message):
    assert message in _error(data)


def test_valid_values_are_converted():
    cfg = from_dict(RunConfig, {"optim": {"lr": "1e-3"}, "data": {"batch_size": 8.0}, "runtime": {"threads": None}})
    assert cfg.optim.lr == 1e-3 and cfg.data.batch_size == 8 and isinstance(cfg.data.batch_size, int)


def test_overrides_set_nested_keys_and_are_validated(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method:\n  name: asl\nsearch:\n  anything: here\n")
    cfg = load_run_config(path, ["method.name=asl-clean", "optim.lr=0.01", "model.ema=true"])
    assert (cfg.method.name, cfg.optim.lr, cfg.model.ema) == ("asl-clean", 0.01, True)
    with pytest.raises(UserError, match=r"--set optim.lr=fast: optim.lr: expected a number .* got 'fast'"):
        load_run_config(path, ["optim.lr=fast"])
    with pytest.raises(UserError, match="--set method.name.x: method.name is not a section"):
        load_run_config(path, ["method.name.x=1"])
    with pytest.raises(UserError, match="expected key=value"):
        apply_overrides({}, ["novalue"])


def test_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  image_size: [1, 2\nmodel: x\n")
    with pytest.raises(UserError, match=r"bad.yaml: invalid YAML at line \d+"):
        load_run_config(bad)
    with pytest.raises(UserError, match="missing.yaml: no such file"):
        load_run_config(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="list.yaml: expected a mapping"):
        load_run_config(listy)


def test_demo_and_benchmark_configs_are_valid():
    cfg = load_run_config(REPO / "search_spaces" / "demo.yaml")  # mhss-train reads a space's base config
    assert cfg.data.name == "digits-mosaic" and cfg.method.name == "mhss"
    base = load_run_config(REPO / "benchmarks" / "base.yaml")
    assert (base.method.name, base.noise.mode, base.data.n_train, base.schedule.epochs) == ("asl", "naive", 4000, 15)


def test_data_root_expands_environment_variables(monkeypatch):
    monkeypatch.setenv("MHSS_TEST_ROOT", "/data/sewer")
    assert from_dict(RunConfig, {"data": {"root": "${MHSS_TEST_ROOT}/frames"}}).data.root == "/data/sewer/frames"
    monkeypatch.delenv("MHSS_TEST_ROOT")
    assert from_dict(RunConfig, {"data": {"root": "${MHSS_TEST_ROOT:-data/sewer}"}}).data.root == "data/sewer"


def test_a_bare_on_or_off_is_the_word_not_a_boolean(tmp_path):
    """YAML 1.1 reads `off` as false: the docs' `amp: off` and `cache_dir: off` must mean the words."""
    from mhss_ray.config import load_run_config
    from mhss_ray.errors import UserError

    path = tmp_path / "run.yaml"
    path.write_text("runtime: {amp: off, channels_last: on}\ndata: {cache_dir: off}\n")
    cfg = load_run_config(path)
    assert (cfg.runtime.amp, cfg.runtime.channels_last, cfg.data.cache_dir) == ("off", "on", "off")
    assert load_run_config(path, ["runtime.compile=on"]).runtime.compile == "on"
    with pytest.raises(UserError, match="data.cache_dir: expected a non-empty string, got true"):
        load_run_config(path, ["data.cache_dir=on"])
