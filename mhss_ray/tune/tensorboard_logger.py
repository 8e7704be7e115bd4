"""Tune's TensorBoard callback, with a searched value named as everywhere else.

Tune writes each trial's searched values as TensorBoard hparams under their config keys, so a per-class
rate shows as `method.noise_rates[3]` there and as `eps_3` in the tables, MLflow and Optuna. This
callback writes the same hparams under `column_name`'s names; Tune then adds no default one of its own.
"""

from __future__ import annotations

import logging

from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict

from ..study_record import column_name

logger = logging.getLogger(__name__)


class StudyTBXLogger(TBXLoggerCallback):
    def __init__(self, class_names: list[str]):
        super().__init__()
        self.class_names = list(class_names)

    def _try_log_hparams(self, trial, result: dict) -> None:
        from tensorboardX.summary import hparams

        params = {}
        for key, value in flatten_dict(trial.evaluated_params).items():
            if isinstance(value, self.VALID_NP_HPARAMS):
                value = value.tolist()
            if isinstance(value, self.VALID_HPARAMS):  # TensorBoard refuses None and containers
                params[column_name(key, self.class_names)] = value
        try:
            for summary in hparams(hparam_dict=params, metric_dict=result):
                self._trial_writer[trial].file_writer.add_summary(summary)
        except Exception:  # a tracker's failure never costs the study
            logger.exception("could not log the hparams of trial %s to TensorBoard", trial)
