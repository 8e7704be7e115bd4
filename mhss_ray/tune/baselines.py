"""Baseline arms (`tune.baselines: [asl, coteaching]`): each named method runs once on the space's
base config beside the searched trials, so a study states what its best trial gained over them.

An arm is a Tune trial whose point is `{"baseline": METHOD}` (`StudySpec.trial_config` builds its run
config). The arms come first, so their reference lines exist while the search runs:
- HyperOpt: `BaselineArms` wraps the searcher, hands out the arms before its own suggestions and
  keeps their results from it (an arm's result belongs to no point of the space);
- random sampling: the arms lead `points_to_evaluate`.
ASHA never stops an arm and never ranks against one (`ArmsRunToEnd`): a reference line cut short by
the search it is the reference for would say nothing.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from .space import BASELINE_KEY


def arm_points(methods: list[str], searched: list[str]) -> list[dict]:
    """Each arm's point: its method, and None for every searched key (Tune would otherwise fill those in
    from the space, sampled or as the distribution objects themselves, and the arm would look searched)."""
    return [{BASELINE_KEY: m, **dict.fromkeys(searched)} for m in methods]


def is_arm(config: dict) -> bool:
    return bool(config.get(BASELINE_KEY))


class BaselineArms(Searcher):
    """A searcher that first suggests the arms, then whatever the wrapped searcher suggests."""

    def __init__(self, searcher: Searcher, methods: list[str], searched: list[str]):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.pending = arm_points(methods, searched)  # arms not handed out yet
        self.arm_trials: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if self.pending:
            self.arm_trials.add(trial_id)
            return self.pending.pop(0)
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.arm_trials:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        if trial_id not in self.arm_trials:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # Tune saves a wrapper's state with get_state (the wrapped searcher saves itself), as for its ConcurrencyLimiter
    def get_state(self) -> dict:
        return {"pending": list(self.pending), "arm_trials": set(self.arm_trials)}

    def set_state(self, state: dict) -> None:
        self.pending, self.arm_trials = list(state["pending"]), set(state["arm_trials"])

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


class ArmsRunToEnd(ASHAScheduler):
    """ASHA for the searched trials; the arms run every epoch and never set a rung's cut-off."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if is_arm(trial.config):  # stopped at max_t like the trials it is compared with
            return TrialScheduler.STOP if result.get(self._time_attr, 0) >= self._max_t else TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if is_arm(trial.config):
            return  # its bracket never hears of it (Tune's on_trial_remove still finds the entry)
        super().on_trial_complete(tune_controller, trial, result)
