"""Run a study on Ray Tune: ASHA on the reported `epoch`, HyperOpt, checkpoints every epoch, resume.

One Tune trial = `driver.trial_main`: the trainer's loop in-process (`tune.resources.workers: 0`) or
a Ray Train run of `workers` workers. A restarted trial (failure retry or `--resume`) continues from
its last checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from ..errors import UserError
from .cluster import check_removable, check_storage, holds_study, remove_study, storage_uri, study_path, write_study_info
from .lock import StudyLock
from .console import reporter, watch_lines
from .trackers import tracker_callbacks
from .driver import trial_main
from .nodes import check_nodes_hold_inputs
from .prebuild import check_cache_here, prebuild_decode_cache
from .resume_repair import check_resumable, repair_before_resume
from .space import BASELINE_KEY, StudySpec
from .warmup_share import FOLDER as PREFIX_FOLDER, DAMAGED, discard_forks, fork_epochs, fork_identity, fork_problem, fork_uri


def _trainable(spec: StudySpec):
    from ray import tune

    return tune.with_resources(tune.with_parameters(trial_main, spec=spec), spec.driver_resources())


def trial_name(trial) -> str:
    """A trial is its id everywhere: the live table, its epoch lines, the analysis tables."""
    return trial.trial_id


def trial_folder(trial) -> str:
    return f"trial_{trial.trial_id}"  # not Tune's default, which strings every searched value into the name


def build_tuner(spec: StudySpec):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.hyperopt import HyperOptSearch

    from .baselines import ArmsRunToEnd, BaselineArms

    t = spec.tune
    if t.scheduler.name == "asha":
        s = t.scheduler
        asha = ArmsRunToEnd if t.baselines else ASHAScheduler
        scheduler = asha(
            time_attr="epoch", max_t=spec.max_t, grace_period=asha_grace(spec), reduction_factor=s.reduction_factor, brackets=s.brackets
        )
    else:
        scheduler = FIFOScheduler()
    a = t.search_alg
    if a.name == "hyperopt":
        search_alg = HyperOptSearch(points_to_evaluate=a.points_to_evaluate, n_initial_points=a.n_initial_points, random_state_seed=a.seed)
        if t.baselines:
            search_alg = BaselineArms(search_alg, t.baselines, [d.key for d in spec.dimensions])
    else:
        # Tune ignores max_concurrent_trials for a generator instance (a warning only): it goes here
        # the arms lead the points (random search samples the searched keys of an arm's point: unused, and
        # left out of mhss-analyze's tables)
        points = [{BASELINE_KEY: m} for m in t.baselines] + (a.points_to_evaluate or [])
        search_alg = BasicVariantGenerator(
            points_to_evaluate=points or None, random_state=a.seed, max_concurrent=t.max_concurrent_trials or 0
        )
    return tune.Tuner(
        _trainable(spec),
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            metric=t.metric,
            mode=t.mode,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=t.num_samples + len(t.baselines),
            max_concurrent_trials=t.max_concurrent_trials,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_folder,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage_uri(t.storage_path),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            # the best checkpoint by the study's metric (mhss-predict, mhss-audit) and the latest (resume): Tune always keeps the latest
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=t.metric, checkpoint_score_order=t.mode),
            progress_reporter=reporter(spec),
            callbacks=tracker_callbacks(t.callbacks, spec.name, spec.class_names),
            verbose=1,  # the live table only; each trial prints its own epoch lines
        ),
    )


def asha_grace(spec: StudySpec) -> int:
    """ASHA's first cut: the space's grace period, or the epoch after the shared onset when that comes later.
    Until their onset the trials of a study at the onset report the same rows (the prefix's), and a cut among
    them would be a coin toss; the onset is known once the prefix has run, before the Tuner is built."""
    grace, plan = spec.tune.scheduler.grace_period, spec.warmup_plan
    if plan is not None and plan.at_onset and plan.forks and plan.forks[0] >= grace:
        grace = min(plan.forks[0] + 1, spec.max_t)
        print(f"ASHA: the first cut comes at epoch {grace}, after the shared onset (tune.scheduler.grace_period is earlier)", flush=True)
    return grace


def user_error_line(error) -> str | None:
    """The one line of a UserError that stopped a trial (Tune keeps the trial's traceback text), else None."""
    for line in reversed(str(error or "").splitlines()):
        if "UserError: " in line:
            return line.split("UserError: ", 1)[1].strip()
    return None


def refusal(results) -> str | None:
    """What the study ends with, in one line, when trials stopped on a user's mistake rather than a crash:
    a damaged shared warm-up fork (a trial refused it), or the one error every trial stopped on (a
    plugin's wrong answer, a config the method refuses)."""
    lines = [user_error_line(r.error) for r in results if r.error]
    damaged = next((line for line in lines if line and DAMAGED in line), None)
    if damaged:  # a fork damaged or replaced after the study checked it: no trial trained on it
        return damaged
    if results and len(lines) == len(results) and lines[0] and len(set(lines)) == 1:
        return f"every trial stopped on: {lines[0]}"
    return None


def _has_trial_state(path: str) -> bool:
    """Whether Tune has recorded the experiment's trials there (an experiment_state-*.json file)."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    selector = pyarrow.fs.FileSelector(inner, allow_not_found=True)
    return any(i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json") for i in fs.get_file_info(selector))


def prefix_path(spec: StudySpec) -> str:
    return f"{study_path(spec)}/{PREFIX_FOLDER}"


def run_warmup_prefix(spec: StudySpec, hint: "_ResumeHint"):
    """Train the shared warm-up's prefix run (tune/warmup_share.py), or finish it after a kill; nothing
    when every fork is already there. It is one Tune trial of its own, so it runs as the study's trials
    do (in-process or Ray Train, GPU shares, retries, a bucket)."""
    from ray import tune

    plan = spec.warmup_plan
    study = study_path(spec)
    identity = fork_identity(spec)
    # at the onset the fork's epoch is the prefix's to find: the one it kept, if it finished (more: not this plan's)
    expected = fork_epochs(study) if plan.at_onset else plan.forks
    problems = {e: fork_problem(study, e, identity) for e in expected}
    if plan.at_onset and len(expected) > 1:
        problems = {e: "more than one fork at the onset" for e in expected}
    if expected and all(p is None for p in problems.values()):
        _settle_onset(spec, expected)
        return None
    damaged = {e: p for e, p in problems.items() if p not in (None, "missing")}
    for epoch, problem in damaged.items():
        print(f"shared warm-up: {fork_uri(study, epoch)}: {problem}; training the prefix again", flush=True)
    if damaged:  # its Tune checkpoint is past the damaged epoch: only a fresh prefix run writes that fork again
        discard_forks(study, damaged)
    elif holds_study(prefix_path(spec)) and not _has_trial_state(prefix_path(spec)):
        # killed before Tune recorded the prefix's trial (only tuner.pkl written): a restore would start a trial
        # without the prefix's point, which then looks for forks that do not exist; start the prefix afresh
        discard_forks(study, [])
    until = f"until its onset (at most {plan.epochs} epochs)" if plan.at_onset else f"epochs 1-{plan.epochs}"
    print(f"shared warm-up: training {until} once for the {plan.trials} searched trials", flush=True)
    if holds_study(prefix_path(spec)):
        tuner = tune.Tuner.restore(prefix_path(spec), trainable=_trainable(spec), resume_errored=True)
    else:
        tuner = tune.Tuner(
            _trainable(spec),
            param_space=plan.point(),
            tune_config=tune.TuneConfig(num_samples=1, trial_name_creator=trial_name, trial_dirname_creator=trial_folder),
            run_config=tune.RunConfig(
                name=PREFIX_FOLDER,
                storage_path=study,
                failure_config=tune.FailureConfig(max_failures=spec.tune.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=0,  # its epoch lines say enough
            ),
        )
    results = _fit_or_storage_full(tuner, spec)
    kept = fork_epochs(study) if plan.at_onset else plan.forks
    missing = [e for e in kept if fork_problem(study, e, identity) is not None] or ([] if kept else ["its onset"])
    if missing and hint.interrupted:
        return results  # Ctrl-C: mhss-tune --resume finishes it
    if missing:
        error = next((r.error for r in results if r.error), None)
        why = f": {str(error).strip().splitlines()[-1][:200]}" if error else ""
        after = "at its onset" if plan.at_onset else f"after epoch {missing[0]}"
        raise UserError(f"{prefix_path(spec)}: the shared warm-up did not finish (no checkpoint {after}){why}")
    _settle_onset(spec, kept)
    onset = " (its onset)" if plan.at_onset else ""
    print(f"shared warm-up: done; the trials start from its checkpoints after epoch {', '.join(map(str, kept))}{onset}", flush=True)
    return None


def _settle_onset(spec: StudySpec, kept) -> None:
    """At the onset: the plan takes the epoch of the fork the prefix kept, and the study's record its length
    (the analysis counts the prefix's epochs once)."""
    if spec.warmup_plan.at_onset:
        spec.warmup_plan = spec.warmup_plan.with_fork(kept[0])
        write_study_info(spec, study_path(spec))


def restore_tuner(spec: StudySpec):
    from ray import tune

    return tune.Tuner.restore(study_path(spec), trainable=_trainable(spec), resume_errored=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect(address: str | None) -> str:
    """Start (or join) Ray. A local cluster runs without token auth unless the user chose a mode;
    its dashboard (which also serves the State API that Ray Train uses to clean up after a crashed
    run) listens on 127.0.0.1 only. Returns the dashboard's address ('' when it has none)."""
    import ray

    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        port = free_port()
        # Train's placement-group cleaner finds the State API by auto-detecting "the" local cluster;
        # with a second Ray instance on the machine that fails ("Found multiple active Ray
        # instances"), the placement groups of stopped trials leak and the study deadlocks. Every
        # process of the cluster inherits this variable, so they ask our own dashboard.
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        context = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port, log_to_driver=True)
    else:
        context = ray.init(address=address)
    url = context.dashboard_url or ""
    return url if not url or "://" in url else f"http://{url}"


def best_table(results, spec: StudySpec, top: int = 5) -> str:
    """The best trials of a finished (or interrupted) study, as plain text."""
    df = results.get_dataframe()
    t = spec.tune
    if df.empty or t.metric not in df:
        return "no trial reported a result"
    arm_col = f"config/{BASELINE_KEY}"
    arms = df[df[arm_col].notna()] if arm_col in df else df.head(0)
    df = df.drop(arms.index).sort_values(t.metric, ascending=t.mode == "min").head(top)
    cols = ["trial_id", t.metric, "epoch"] + [f"config/{d.key}" for d in spec.dimensions if not d.key.startswith("method.noise_rates[")]
    cols = [c for c in cols if c in df]
    lines = [" | ".join(c.removeprefix("config/") for c in cols)]
    for _, row in df[cols].iterrows():
        lines.append(" | ".join(f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v) for v in row))
    for _, arm in arms.iterrows():
        lines.append(f"baseline {arm[arm_col]}: {t.metric} {arm[t.metric]:.4g} at epoch {arm['epoch']}")
    return "\n".join(lines)


class _ResumeHint(logging.Filter):
    """Tune ends an interrupted study with `Tuner.restore(path=..., trainable=...)`, which is not
    how this study resumes; the hint is dropped and `mhss-tune` prints its own command instead."""

    def __init__(self):
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Tuner.restore(" in record.getMessage():
            self.interrupted = True
            return False
        return True


class _TrialRefusal(logging.Filter):
    """A trial stopped by a user's mistake (a UserError: a plugin's wrong answer, a damaged fork) is logged by
    Tune with the trial's whole traceback; one line says it instead (the study ends with it, study.refusal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            line = user_error_line(record.exc_info[1])
            if line:
                record.msg, record.args, record.exc_info, record.exc_text = f"{record.getMessage()}: {line}", (), None, None
        return True


class StorageFull(Exception):
    """The study's storage disk filled up: trials stopped on their checkpoints (mhss-tune says one line)."""

    def __init__(self, folder: str, need: int):
        super().__init__(folder)
        self.folder, self.need = folder, need


class _QuietDiskFull(logging.Filter):
    """Tune logs each trial that died on a full disk with its whole traceback; mhss-tune says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not ((exc is not None and "No space left on device" in str(exc)) or "No space left on device" in record.getMessage())


DISK_FULL_LOGGERS = (
    "ray.tune.execution.tune_controller",
    "ray.tune.execution.experiment_state",
    "ray.train._internal.syncer",
    "ray.tune.tune",
)


def local_storage_need(spec: StudySpec) -> tuple[str, int] | None:
    """(the study folder, the bytes a checkpoint takes) for a study in a local folder, None for a bucket."""
    if "://" in str(spec.tune.storage_path):
        return None
    from ..disk_space import checkpoint_bytes

    return str(study_path(spec)), checkpoint_bytes(spec.base_config)


def check_storage_room(spec: StudySpec) -> None:
    """Room for every trial's kept checkpoint, and a second one for each running trial while it replaces
    its first (num_to_keep 1); refused before anything is written."""
    found = local_storage_need(spec)
    if found is None:
        return
    from ..disk_space import check_room

    folder, one = found
    running = min(spec.num_trials, spec.tune.max_concurrent_trials or spec.num_trials)
    forks = max(len(spec.warmup_plan.forks), 1) + 1 if spec.warmup_plan is not None else 0  # the shared warm-up's forks and its own
    what = f"a checkpoint per trial ({spec.num_trials}, about {one / 1e6:.0f} MB each)" + (
        f" and {forks} for the shared warm-up" if forks else ""
    )
    check_room(folder, one * (spec.num_trials + running + forks), "--storage", what)


def _fit_or_storage_full(tuner, spec: StudySpec):
    """tuner.fit(); StorageFull when trials died because the storage disk is full (Tune then fails even
    to read their error files, which it could not write)."""
    from ..disk_space import STATE_MARGIN, free_bytes

    quiet = _QuietDiskFull()
    for name in DISK_FULL_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    found = local_storage_need(spec)
    try:
        results = tuner.fit()
    except Exception:
        if found and free_bytes(found[0]) < found[1] + STATE_MARGIN:
            raise StorageFull(*found) from None
        raise
    finally:
        for name in DISK_FULL_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
    if found and free_bytes(found[0]) < found[1] + STATE_MARGIN and any(r.error for r in results):
        raise StorageFull(*found)
    return results


@dataclass
class StudyRun:
    results: object  # Tune's ResultGrid
    interrupted: bool  # stopped by Ctrl-C (SIGINT); the state was saved
    note: str | None = None  # e.g. a crashed driver's lock taken over


def run_study(
    spec: StudySpec, address: str | None = None, resume: bool | str = False, overwrite: bool = False, shared_storage: bool = False
) -> StudyRun:
    """Run (or resume) the study. A new study never mixes with an old one of the same name: it is
    refused unless `overwrite` deletes the old one first (only what mhss-tune and Tune wrote there).
    `resume="if-exists"` resumes the study if the storage holds it and starts it otherwise.
    Every check that needs no cluster comes before anything is written; one driver at a time holds
    the study (tune/lock.py)."""
    check_storage(spec.tune.storage_path, address, shared_storage)  # before anything starts
    check_cache_here(spec, address)
    check_storage_room(spec)
    path = study_path(spec)
    lock = StudyLock(path)
    lock.check_free()
    started = holds_study(path)  # the trials' own experiment (a study killed in its shared warm-up has only that one)
    if resume == "if-exists":
        resume = started or holds_study(prefix_path(spec))
    if resume and not started and not holds_study(prefix_path(spec)):  # checked before Ray starts: it needs no cluster
        raise UserError(f"{path}: holds no study to resume")
    if resume and started:
        check_resumable(path)
    if not resume and (started or holds_study(prefix_path(spec))):
        if not overwrite:
            raise UserError(
                f"{path}: already holds a study; pass --resume to continue it, --overwrite to start over, or --name to start another"
            )
        check_removable(path)
    dashboard = connect(address)
    if address is not None:  # a cluster: the inputs must be on every node, not only here (before anything is written)
        checked = check_nodes_hold_inputs(spec)
        if checked:
            print(checked, flush=True)
    note = lock.acquire()
    try:
        if not resume:
            if holds_study(path) or holds_study(prefix_path(spec)):
                remove_study(path)
            write_study_info(spec, path)  # first, so that an interrupted study can be analysed too
        elif started:
            for line in repair_before_resume(path):
                print(line, flush=True)
        print(watch_lines(spec, dashboard, address), flush=True)
        prebuild_decode_cache(spec, address)  # data.cache_dir, with every CPU, before the first trial
        hint = _ResumeHint()
        logging.getLogger("ray.tune.tune").addFilter(hint)
        logging.getLogger("ray.tune.execution.tune_controller").addFilter(_TrialRefusal())
        if spec.warmup_plan is not None:
            interrupted = run_warmup_prefix(spec, hint)
            if interrupted is not None:
                return StudyRun(interrupted, True, note)
        tuner = restore_tuner(spec) if resume and started else build_tuner(spec)
        results = _fit_or_storage_full(tuner, spec)
        refused = refusal(results)
        if refused:
            raise UserError(refused)
        return StudyRun(results, hint.interrupted, note)
    finally:
        lock.release()
