"""Run a study on Ray Tune: ASHA on the reported `epoch`, HyperOpt, checkpoints every epoch, resume.

One Tune trial = `trial_main`, which builds the trainer of its sampled config and calls the same
`Trainer.run` as `mhss-train`, with a report function that hands each epoch's metrics and checkpoint
to `ray.tune.report`. A restarted trial (failure retry or `--resume`) continues from its last
checkpoint. This is the in-process path (`tune.resources.workers: 0`); Ray Train workers come next.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import UserError
from .space import StudySpec


def storage_uri(path: str) -> str:
    """Tune wants an absolute local path or a URI (s3://, gs://, ...)."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def study_path(spec: StudySpec) -> str:
    return f"{storage_uri(spec.tune.storage_path).rstrip('/')}/{spec.name}"


def trial_main(config: dict, spec: StudySpec) -> None:
    """The Tune function trainable: one sampled configuration, trained epoch by epoch."""
    import torch
    from ray import tune

    from ..train.checkpoint import load_checkpoint
    from ..train.loop import Trainer

    share = spec.trial_resources()["GPU"]
    if torch.cuda.is_available() and 0 < share < 1:
        torch.cuda.set_per_process_memory_fraction(share)  # stay inside this trial's slice of the GPU
    cfg = spec.trial_config(config)
    trainer = Trainer(cfg)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(folder))

    import ray

    node_id = ray.get_runtime_context().get_node_id()  # which node ran it (analysis, node-loss checks)

    def report(metrics: dict, checkpoint_dir: str) -> None:
        tune.report({**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    trainer.run(report, log=lambda line: print(line, flush=True))


def _trainable(spec: StudySpec):
    from ray import tune

    r = spec.trial_resources()
    return tune.with_resources(tune.with_parameters(trial_main, spec=spec), {"cpu": r["CPU"], "gpu": r["GPU"]})


def build_tuner(spec: StudySpec):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.hyperopt import HyperOptSearch

    t = spec.tune
    if t.scheduler.name == "asha":
        s = t.scheduler
        scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor, brackets=s.brackets)
    else:
        scheduler = FIFOScheduler()
    a = t.search_alg
    if a.name == "hyperopt":
        search_alg = HyperOptSearch(points_to_evaluate=a.points_to_evaluate, n_initial_points=a.n_initial_points, random_state_seed=a.seed)
    else:
        search_alg = BasicVariantGenerator(points_to_evaluate=a.points_to_evaluate, random_state=a.seed)
    return tune.Tuner(
        _trainable(spec),
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            metric=t.metric, mode=t.mode, scheduler=scheduler, search_alg=search_alg, num_samples=t.num_samples, max_concurrent_trials=t.max_concurrent_trials
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage_uri(t.storage_path),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )


def restore_tuner(spec: StudySpec):
    from ray import tune

    path = study_path(spec)
    if not tune.Tuner.can_restore(path):
        raise UserError(f"{path}: holds no study to resume")
    return tune.Tuner.restore(path, trainable=_trainable(spec), resume_errored=True)


def connect(address: str | None) -> None:
    """Start (or join) Ray. A local cluster runs without token auth unless the user chose a mode."""
    import ray

    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", include_dashboard=False, log_to_driver=True)
    else:
        ray.init(address=address)


def best_table(results, spec: StudySpec, top: int = 5) -> str:
    """The best trials of a finished (or interrupted) study, as plain text."""
    df = results.get_dataframe()
    t = spec.tune
    if df.empty or t.metric not in df:
        return "no trial reported a result"
    df = df.sort_values(t.metric, ascending=t.mode == "min").head(top)
    cols = ["trial_id", t.metric, "epoch"] + [f"config/{d.key}" for d in spec.dimensions if not d.key.startswith("method.noise_rates[")]
    cols = [c for c in cols if c in df]
    lines = [" | ".join(c.removeprefix("config/") for c in cols)]
    for _, row in df[cols].iterrows():
        lines.append(" | ".join(f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v) for v in row))
    return "\n".join(lines)


def run_study(spec: StudySpec, address: str | None = None, resume: bool = False):
    """Run (or resume) the study; returns Tune's ResultGrid."""
    if spec.tune.resources.workers > 0:
        raise UserError("tune.resources.workers: Ray Train workers are not supported yet; use workers: 0 (the loop runs inside each trial)")
    connect(address)
    tuner = restore_tuner(spec) if resume else build_tuner(spec)
    return tuner.fit()
