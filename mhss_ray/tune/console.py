"""What `mhss-tune` prints while a study runs.

The live table is Tune's own `CLIReporter`, told which columns matter: the trial, its status, the
searched values under short names (alpha, theta, lr; per-class noise rates by class when there are at
most `NAMED_CLASSES`, else their mean, which each trial reports as `eps_mean`), the epoch and the
study's metric, best trial first. Tune's newer default reporter infers its columns (every per-class
rate, cut to `...od.noise_rates[i]`, and not the metric); it ignores a given reporter, so
`quiet_ray_env` selects the classic one. Every line a trial prints starts with its id
(`trial_line`), once: Ray's log deduplication would fold the epoch lines of different trials into
one, and Ray Train's print patch would print each one a second time through its logger.
"""

from __future__ import annotations

import os
import re
import sys

from ..study_record import NAMED_CLASSES, column_name
from .space import BASELINE_KEY, StudySpec

REPORT_EVERY_S = 30  # the live table, at most this often (and once at the end)
PER_CLASS = re.compile(r"^(?P<key>.+)\[(?P<index>\d+)\]$")


def quiet_ray_env(local_cluster: bool) -> None:
    """Environment defaults for the driver (and the local cluster it starts, whose processes inherit
    them). Read by Ray when it is imported, so called before that; a value the user set wins."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter: it honours the columns chosen here
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # epoch lines of two trials differ only in numbers: never fold them
    # Every epoch checkpoints and num_to_keep forces a state snapshot each time (what makes --resume exact):
    # expected here, so Tune's warning about frequent snapshots says nothing
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if local_cluster:
        # The watcher reacts to a cloud node being drained (spot preemption); one machine has no such
        # node, and starting it logs a core-worker error line for every Ray Train trial.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def trial_line(trial_id: str):
    """The `log` of a trial's loop: each line once on stdout, prefixed with the trial's id. Written to
    the stream, not through `print`, which Ray Train may patch into a logger that echoes it."""

    def log(line: str) -> None:
        sys.stdout.write(f"[{trial_id}] {line}\n")
        sys.stdout.flush()

    return log


def per_class_groups(spec: StudySpec) -> dict[str, list[str]]:
    """Searched per-class keys, grouped: {"method.noise_rates": ["method.noise_rates[0]", ...]}."""
    groups: dict[str, list[str]] = {}
    for d in spec.dimensions:
        m = PER_CLASS.match(d.key)
        if m:
            groups.setdefault(m.group("key"), []).append(d.key)
    return groups


def summarised(spec: StudySpec) -> bool:
    """Whether the per-class rates are shown as their mean (too many classes for a column each)."""
    return bool(per_class_groups(spec)) and len(spec.class_names) > NAMED_CLASSES


def summary_metrics(spec: StudySpec, point: dict) -> dict:
    """What a trial reports beside its metrics so that the table can show its point in one column:
    a baseline arm its method (`arm`; Tune's table reads parameters only from every trial's config,
    which searched trials do not share with arms), a searched trial the mean of its per-class rates
    (`eps_mean`) when they are summarised."""
    if point.get(BASELINE_KEY):
        return {"arm": point[BASELINE_KEY]}
    if not summarised(spec):
        return {}
    keys = [k for keys in per_class_groups(spec).values() for k in keys]
    values = [float(point[k]) for k in keys if point.get(k) is not None]
    return {"eps_mean": sum(values) / len(values)} if values else {}


def short_names(spec: StudySpec) -> dict[str, str]:
    """Searched key -> its column: the last part of the key (`alpha`, `lr`), the whole key where two
    searched keys end alike; per-class rates as eps_<class> (few classes) or not at all (their mean)."""
    names: dict[str, str] = {}
    plain = [d.key for d in spec.dimensions if not PER_CLASS.match(d.key)]
    tails = [k.rsplit(".", 1)[-1] for k in plain]
    for key, tail in zip(plain, tails):
        names[key] = tail if tails.count(tail) == 1 else key
    if not summarised(spec):
        for keys in per_class_groups(spec).values():
            for key in keys:
                names[key] = column_name(key, spec.class_names)
    return names


def reporter(spec: StudySpec):
    """Tune's CLIReporter with this study's columns, sorted by its metric."""
    from .cluster import study_path
    from .reporter import StudyReporter  # imports Ray: only once the study starts

    t = spec.tune
    parameters = short_names(spec)
    metrics = {"arm": "baseline"} if t.baselines else {}
    metrics.update({"epoch": "epoch", t.metric: t.metric})
    if summarised(spec):
        metrics["eps_mean"] = "eps (mean)"
    return StudyReporter(
        study_path(spec),
        metric_columns=metrics,
        parameter_columns=parameters,
        max_report_frequency=REPORT_EVERY_S,
        sort_by_metric=True,  # by the study's metric and mode, which Tune hands the reporter
        max_column_length=24,
    )


def watch_lines(spec: StudySpec, dashboard: str, address: str | None) -> str:
    """Where to watch the study while it runs (printed when it starts; the README's "Watch it live")."""
    from .cluster import study_path

    path = study_path(spec)
    lines = ["watch it live:"]
    if dashboard:
        lines.append(f"  Ray dashboard   {dashboard}" + ("  (on this machine only)" if address is None else ""))
    if "://" in path:
        lines.append(f"  TensorBoard     reads local folders: copy {path} down (e.g. aws s3 sync) and run tensorboard --logdir on the copy")
    else:
        lines.append(f"  TensorBoard     tensorboard --logdir {path}")
    if address is not None:
        lines.append("  job output      ray job logs --follow JOB_ID  (the id `ray job submit` printed)")
    return "\n".join(lines)
