"""Experiment trackers a study logs to, with Ray's own integrations (`tune.callbacks: [mlflow, wandb]`).

Each is a Tune callback on the driver: a run per trial with its searched values as parameters and
every epoch's metrics as steps. Where they write comes from each tool's own environment, as its
users expect:
    mlflow   MLFLOW_TRACKING_URI (e.g. sqlite:///mlflow.db or an MLflow server); the experiment is the study's name
    wandb    WANDB_API_KEY, or WANDB_MODE=offline (no account, no network: `wandb sync` uploads later);
             the project is WANDB_PROJECT or the study's name, the group the study's name
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import UserError

TRACKERS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}  # name -> (module it needs, extra that installs it)


def check_trackers(names: list, key: str = "tune.callbacks") -> None:
    """Known names, each once, and installed (checked with the space file, before anything starts)."""
    for i, name in enumerate(names):
        if name not in TRACKERS:
            raise UserError(f"{key}[{i}]: expected one of {', '.join(TRACKERS)}, got {name!r}")
        if name in names[:i]:
            raise UserError(f"{key}[{i}]: {name} is listed twice")
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"{key}[{i}]: {name} is not installed; pip install 'mhss-ray[{extra}]'")


def tracker_callbacks(names: list, study_name: str, class_names: list[str]) -> list:
    callbacks = []
    if importlib.util.find_spec("tensorboardX") is not None:  # Tune's own would name eps_<class> by its config key
        from .tensorboard_logger import StudyTBXLogger

        callbacks.append(StudyTBXLogger(class_names))
    for name in names:
        if name == "mlflow":
            from .mlflow_logger import StudyMLflowLogger

            uri = os.environ.get("MLFLOW_TRACKING_URI")
            callbacks.append(StudyMLflowLogger(class_names, tracking_uri=uri, experiment_name=study_name))
        elif name == "wandb":
            from .wandb_logger import StudyWandbLogger

            callbacks.append(StudyWandbLogger(project=os.environ.get("WANDB_PROJECT") or study_name, group=study_name))
    return callbacks
