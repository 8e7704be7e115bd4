"""tune.callbacks: the shared demo study logged every trial to MLflow (a SQLite store) and to W&B
(offline mode); both are read back and compared with what Tune recorded."""

import json
from pathlib import Path

import pytest

from tests.studies import result_rows

pytestmark = pytest.mark.slow


def _searched_and_arms(study: Path):
    rows = result_rows(study)
    arms = {t for t, r in rows.items() if r[0]["config"].get("baseline")}
    return rows, arms


def test_mlflow_holds_a_run_per_trial_with_its_params_and_every_epoch(demo_study):
    from mlflow.tracking import MlflowClient

    storage, _, env, proc = demo_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, arms = _searched_and_arms(storage / "demo")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("demo")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(rows)  # one run per trial, named by its id
    for trial_id, reported in rows.items():
        run = runs[trial_id]
        assert run.info.status == "FINISHED"
        config = reported[0]["config"]
        if trial_id in arms:
            assert run.data.params == {"baseline": config["baseline"]}
        else:
            assert float(run.data.params["method.alpha"]) == pytest.approx(config["method.alpha"])
            assert float(run.data.params["eps_3"]) == pytest.approx(config["method.noise_rates[3]"])  # per-class rates by class
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_mAP"))
        assert history == [(r["epoch"], pytest.approx(r["val_mAP"])) for r in reported]


def test_tensorboard_hparams_name_a_per_class_rate_by_its_class(demo_study):
    """Each trial's TensorBoard events hold its searched values as hparams, named as in the tables
    (`eps_3`), never by the config key (`method.noise_rates[3]`)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    storage, _, _, proc = demo_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, arms = _searched_and_arms(storage / "demo")
    searched = set(rows) - arms
    assert searched
    for trial_id in searched:
        (events,) = (storage / "demo").glob(f"*{trial_id}*/events.out.tfevents.*")
        names = {}
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        names.update(data.session_start_info.hparams)
        config = rows[trial_id][0]["config"]
        assert names["eps_3"].number_value == pytest.approx(config["method.noise_rates[3]"])
        assert names["method.alpha"].number_value == pytest.approx(config["method.alpha"])
        assert not any(name.startswith("method.noise_rates") for name in names)


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (`run-<id>.wandb`: a 7-byte header, then LevelDB's
    log format, 32 KiB blocks of records that may span blocks); W&B 0.31 ships no Python reader for it."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            yield wandb_internal_pb2.Record.FromString(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield wandb_internal_pb2.Record.FromString(pending + chunk)


def _items(items) -> dict:
    """W&B's key/value records: a key is either `key` or `nested_key` (its parts)."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def test_wandb_offline_holds_a_run_per_trial_with_its_config_and_every_epoch(demo_study):
    storage, _, env, proc = demo_study
    rows, arms = _searched_and_arms(storage / "demo")
    files = sorted(Path(env["WANDB_DIR"]).glob("wandb/offline-run-*/run-*.wandb"))
    seen = {}
    for file in files:
        history, config, run = [], {}, None
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                config.update(_items(run.config.update))
            elif kind == "config":
                config.update(_items(record.config.update))
            elif kind == "history":
                history.append(_items(record.history.item))
        assert run.run_group == "demo" and run.project == "demo"
        seen[run.run_id] = (history, config)
    assert sorted(seen) == sorted(rows)  # one run per trial, its id the trial's
    for trial_id, (history, config) in seen.items():
        reported = rows[trial_id]
        assert [(h["epoch"], pytest.approx(h["val_mAP"])) for h in history] == [(r["epoch"], r["val_mAP"]) for r in reported]
        if trial_id in arms:
            assert config["baseline"] == reported[0]["config"]["baseline"]
        else:
            assert config["method.alpha"] == pytest.approx(reported[0]["config"]["method.alpha"])
