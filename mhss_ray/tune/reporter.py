"""Tune's CLIReporter, naming the study folder. A module of its own: Tune pickles the reporter with
the study (so its class lives at module level), and it imports Ray, which console.py must not."""

from __future__ import annotations

from ray.tune import CLIReporter


class StudyReporter(CLIReporter):
    """Names the study folder where Tune names its driver's staging folder (`Result logdir:
    /tmp/ray/session_...`), which is neither where the results are nor what TensorBoard should read."""

    def __init__(self, study_folder: str, **kwargs):
        super().__init__(**kwargs)
        self.study_folder = study_folder

    def _progress_str(self, *args, **kwargs) -> str:
        lines = super()._progress_str(*args, **kwargs).split("\n")
        return "\n".join(f"Study folder: {self.study_folder}" if line.startswith("Result logdir: ") else line for line in lines)
