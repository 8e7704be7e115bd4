"""Ray Train with two CPU workers (gloo, DDP): the method state stays identical on both workers."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from .test_study import TINY_SPACE

pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the Train controller runs our callback
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1")
    yield ray
    ray.shutdown()


def make_collector(path):
    from ray.train.v2.api.callback import UserCallback

    class AllWorkersMetrics(UserCallback):
        """Writes every worker's metrics of every report (Tune only sees the first worker's)."""

        def after_report(self, run_context, metrics, checkpoint):
            with open(path, "a") as f:
                f.write(json.dumps([{k: m.get(k) for k in ("epoch", "method_state_digest", "val_mAP")} for m in metrics]) + "\n")

    return AllWorkersMetrics()


def test_two_workers_keep_identical_method_state(tmp_path, local_ray):
    from mhss_ray.tune.driver import build_torch_trainer
    from mhss_ray.tune.space import load_space

    data = dict(TINY_SPACE)
    data["method"] = {"name": "mhss", "q": 1, "warmup": 1, "theta": 0.3}  # warm-up >= q
    data["schedule"] = {"epochs": 3}
    data["tune"] = {"resources": {"workers": 2, "cpus_per_worker": 1}}
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(data))
    spec = load_space(tmp_path / "two.yaml")
    reports = tmp_path / "reports.jsonl"
    trainer = build_torch_trainer(
        {"method.alpha": 1.2, "optim.lr": 1e-3}, spec, "t0", str(tmp_path / "storage"), [make_collector(str(reports))]
    )
    result = trainer.fit()
    assert result.error is None
    assert result.checkpoint is not None and (tmp_path / "storage" / "train-t0").is_dir()
    per_epoch = [json.loads(line) for line in reports.read_text().splitlines()]
    assert [[m["epoch"] for m in workers] for workers in per_epoch] == [[1, 1], [2, 2], [3, 3]]
    for workers in per_epoch:
        first, second = workers
        assert first["method_state_digest"] == second["method_state_digest"]  # histories and labels agree
        assert first["val_mAP"] is not None and second["val_mAP"] is None  # the first worker evaluates
    assert len({w[0]["method_state_digest"] for w in per_epoch}) == 3  # and the state does move

    # what a restarted trial would report first if Tune had heard of epoch 1 only: the epochs of the
    # checkpoints this real run kept (the best by val_mAP and the latest), read from Train's own run state
    from mhss_ray.tune.forward import unreported_epochs

    run = tmp_path / "storage" / "train-t0"
    items = unreported_epochs(str(run), after_epoch=1)
    val = [w[0]["val_mAP"] for w in per_epoch]
    best = 1 + max(range(3), key=lambda e: val[e])
    assert [i["metrics"]["epoch"] for i in items] == sorted({best, 3} - {1})
    assert items[-1]["metrics"]["val_mAP"] == per_epoch[2][0]["val_mAP"]
    assert all(Path(i["checkpoint_path"]).is_dir() for i in items) and items[-1]["checkpoint_path"] == result.checkpoint.path
    assert unreported_epochs(str(run), after_epoch=3) == []
