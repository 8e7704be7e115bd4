"""Ray's MLflow callback, fitted to a study (a module of its own: it imports Ray and MLflow, and Tune
pickles the callback with the study).

- MLflow refuses `[` in a name, so a per-class rate `method.noise_rates[3]` is logged as the parameter
  `eps_<class 3>`, the name the analysis tables use, and the copy of the config that Tune puts in every
  result (`config/...`) is not logged as metrics; a baseline arm logs only `baseline`, not the searched
  keys it leaves unset.
- Every epoch is logged at step = epoch (Tune's iteration count restarts with a resumed trial).
- A tracker that fails (a server down, a full disk) prints one line and the study goes on: losing a
  study to its logging would cost more than a gap in the tracker.
"""

from __future__ import annotations

import logging

from ray.air.integrations.mlflow import MLflowLoggerCallback

from ..study_record import column_name

logger = logging.getLogger(__name__)


def mlflow_params(config: dict, class_names: list[str]) -> dict:
    return {column_name(key, class_names): value for key, value in config.items() if value is not None}


class StudyMLflowLogger(MLflowLoggerCallback):
    def __init__(self, class_names: list[str], **kwargs):
        super().__init__(**kwargs)
        self.class_names = list(class_names)
        self._warned = False

    def _tolerate(self, what: str, trial, call) -> None:
        try:
            call()
        except Exception as exc:  # MLflow's errors vary with the store
            if not self._warned:
                print(f"mlflow: could not {what} of trial {trial}: {str(exc).splitlines()[0][:200]} (the study goes on)", flush=True)
                self._warned = True
            logger.debug("mlflow failure", exc_info=True)

    def log_trial_start(self, trial) -> None:
        def start() -> None:
            if trial not in self._trial_runs:
                run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": str(trial)}, run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=mlflow_params(trial.config, self.class_names))

        self._tolerate("start the run", trial, start)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = {k: v for k, v in result.items() if k != "config"}
        step = int(result.get("epoch") or iteration)
        self._tolerate(
            "log an epoch", trial, lambda: self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)
        )

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self._tolerate("end the run", trial, lambda: super(StudyMLflowLogger, self).log_trial_end(trial, failed))
