"""Ray's W&B callback, with every trial's run written out before Ray ends its logging actor.

Ray's logging actor returns from `wandb.finish()` and is killed at once (`ray.kill`); W&B's service
process can still be writing the run then, and dies with it: the study's last trial was left with an
empty `.wandb` file when trials ended quickly (tests/tune/test_trackers.py). `wandb.teardown()` waits
for the service to finish.
"""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor


class _WrittenOutWandbActor(_WandbLoggingActor):
    def run(self):
        super().run()
        self._wandb.teardown()


class StudyWandbLogger(WandbLoggerCallback):
    _logger_actor_cls = _WrittenOutWandbActor
