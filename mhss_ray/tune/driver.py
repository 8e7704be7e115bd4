"""One Tune trial: train one sampled configuration, in-process or as a Ray Train run.

`trial_main` is the Tune function trainable. With `tune.resources.workers: 0` it runs the trainer's
loop in its own process (quick CPU studies); otherwise it builds a `ray.train.torch.TorchTrainer`
whose workers run the same loop (`worker_main`) and whose callback (forward.py) hands every epoch's
metrics to the trial, which reports them to Tune, so ASHA sees each epoch. The Train run is named after the trial id and stored under
the study folder: a restarted trial (failure retry, `mhss-tune --resume`) finds the run's latest
checkpoint and continues from that epoch.
"""

from __future__ import annotations

import gc
import json
import os
import socket

from ..disk_space import check_storage_room
from ..train.checkpoint import CHECKPOINT_FILE
from .checkpoint_notes import read_reported, restored_as, rows_to_report_again, write_reported
from ..study_record import SHARED_ROW
from .cluster import study_path
from .console import summary_metrics, trial_line
from .lock import DriverWatch
from .space import BASELINE_KEY, StudySpec
from .warmup_share import PREFIX_KEY, fork_identity, load_fork, save_fork

# A Train run whose workers wait for a slot on a busy cluster must not give up after Ray's default
# 60 s: trials queue for resources, as Tune's own trials do.
WORKER_GROUP_START_TIMEOUT_S = str(7 * 24 * 3600)


def train_run_name(trial_id: str) -> str:
    return f"train-{trial_id}"


def cap_gpu_memory(share: float) -> None:
    """A trial holding a fraction of a GPU keeps its allocations inside that fraction."""
    import torch

    if torch.cuda.is_available() and 0 < share < 1:
        torch.cuda.set_per_process_memory_fraction(share)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()  # which node ran it (analysis, node-loss checks)


def _scratch(trial_id: str) -> str:
    """The trial's checkpoint scratch folder on this node: one per trial, so a killed trial leaves
    at most one behind, and its resumed run clears it."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"mhss-ckpt-{trial_id}")


# ----------------------------------------------------------------------------- the loop of a trial


def train_point(spec: StudySpec, point: dict, trial_id: str, session, stop=None) -> None:
    """Train one point of the space, resuming from the session's checkpoint. `session` is `ray.tune`
    (workers: 0, the loop inside the Tune trial) or `ray.train` (on every Ray Train worker): both
    offer get_checkpoint, report and Checkpoint."""
    import torch

    from ..train.checkpoint import load_checkpoint
    from ..train.loop import Trainer

    cap_gpu_memory(spec.tune.resources.gpu_per_worker)
    shown = summary_metrics(spec, point)  # e.g. the mean of the searched per-class rates, for the live table
    cfg = spec.trial_config(point)
    trainer = Trainer(cfg)
    log = trial_line(trial_id) if trainer.world.is_main else (lambda line: None)  # one worker speaks for the trial
    checkpoint = session.get_checkpoint()
    history: list[dict] = []  # every row this trial reported, saved with each checkpoint (checkpoint_notes)
    plan, prefix = spec.warmup_plan, bool(point.get(PREFIX_KEY))
    forks = plan is not None and checkpoint is None and not prefix and not point.get(BASELINE_KEY)
    if checkpoint is not None:
        log(f"restoring its checkpoint (node {socket.gethostname()})")
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(folder)
            history = read_reported(folder)
            again = rows_to_report_again(folder, state["epoch"])
        trainer.load_state_dict(state)
        log(f"resuming after epoch {state['epoch']}")
        if again:  # a checkpoint --resume put in place of a deleted one: newer than Tune's state knows
            log(f"reporting epoch {', '.join(str(r['epoch']) for r in again)} again: its checkpoint was newer than the study's state")
        for row in again:
            session.report(row)
    node_id = _node_id()
    local_storage = None if "://" in str(spec.tune.storage_path) else study_path(spec)
    driver = DriverWatch(study_path(spec))

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        gone = driver.gone()
        if gone:  # the driver was killed: write nothing more into the study (its --resume trains this epoch again)
            log(f"stopping without reporting epoch {metrics.get('epoch')}: the mhss-tune that started this trial is gone ({gone})")
            os._exit(0)
        # torch_threads: what the trial computed with (Ray's per-CPU default when runtime.threads is unset); the
        # analysis writes it into best_config_<study>.yaml, since another count changes the float sums
        row = {**metrics, **shown, "node_id": node_id, "torch_threads": torch.get_num_threads()}
        history.append(row)
        if checkpoint_dir:
            if local_storage is not None:  # stop before a full disk cuts the study's own state files short
                check_storage_room(local_storage, os.path.getsize(os.path.join(checkpoint_dir, CHECKPOINT_FILE)))
            write_reported(checkpoint_dir, history)
            if prefix and forks_here(metrics["epoch"]):
                save_fork(study_path(spec), metrics["epoch"], checkpoint_dir, fork_identity(spec))
        session.report(row, checkpoint=session.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    def forks_here(epoch: int) -> bool:  # the prefix run: a fork after this epoch (at the onset: the method says when)
        return plan.fork_here(epoch, getattr(trainer.method, "onset", None), cfg.schedule.epochs)

    if forks:
        fork_warmup(trainer, spec, report, log, trial_id)
    stop_after = (lambda metrics: forks_here(metrics["epoch"])) if prefix and plan.at_onset else None
    trainer.run(report, log=log, scratch=_scratch(trial_id), stop=stop, until=plan.epochs if prefix else None, stop_after=stop_after)


def fork_warmup(trainer, spec: StudySpec, report, log, trial_id: str) -> None:
    """Start a fresh searched trial from the shared warm-up's fork at its own warm-up's end: report the
    prefix's rows of the epochs before it, the last with the fork as the trial's own checkpoint."""
    import shutil

    from ..registry import METHODS
    from ..train.checkpoint import load_checkpoint, save_checkpoint

    plan = spec.warmup_plan
    epoch = plan.forks[0] if plan.at_onset else METHODS.get(trainer.cfg.method.name).warmup_epochs(trainer.cfg)
    folder = _scratch(trial_id)
    shutil.rmtree(folder, ignore_errors=True)  # what a killed run left
    load_fork(study_path(spec), epoch, folder, fork_identity(spec))  # refused when damaged or foreign
    state = load_checkpoint(folder)
    rows = [r for r in read_reported(folder) if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]
    trainer.load_state_dict(state)
    if trainer.world.is_main:  # the same state, saved with this trial's own config (mhss-predict reads it from its checkpoint)
        save_checkpoint(folder, trainer.state_dict(epoch - 1))
    log(f"starting from the shared warm-up after epoch {epoch}")
    main = trainer.world.is_main
    for row in rows:
        metrics = {**{k: v for k, v in row.items() if k != "node_id"}, SHARED_ROW: True}  # trained once, by the prefix
        report(metrics, folder if main and row["epoch"] == epoch else None)
    shutil.rmtree(folder, ignore_errors=True)


def stop_at_exit(timeout_s: float = 120.0):
    """An event set when this process exits, which then waits (up to `timeout_s`) for the calling
    thread to end. Tune runs an in-process trial in a daemon thread, and Ray Train a worker's loop in
    one, and both end the process as soon as the trial stops (its scheduler, or the Train run's owner
    gone); a thread still inside torch when the interpreter shuts down aborts with a core dump on the
    console (SIGABRT in autograd's backward). The loop ends at its next batch instead."""
    import atexit
    import threading

    stop, thread = threading.Event(), threading.current_thread()

    def wait() -> None:
        stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout_s)

    atexit.register(wait)
    return stop


def run_in_process(config: dict, spec: StudySpec) -> None:
    from ray import tune

    train_point(spec, config, tune.get_context().get_trial_id(), tune, stop=stop_at_exit())


def quiet_ray_train() -> None:
    """No console line per checkpoint and per report from Ray's own loggers (Train's LoggingConfig
    covers the `ray.train` loggers of its workers; the report line's logger is named after its file)."""
    import logging

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:  # another Ray version: at worst the line is printed
        pass


def worker_main(loop_config: dict) -> None:
    """Runs on every Ray Train worker: the same loop, reporting through `ray.train.report`."""
    import ray.train
    import torch

    quiet_ray_train()

    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())  # "cuda" means this worker's GPU
    train_point(loop_config["spec"], loop_config["point"], loop_config["trial_id"], ray.train, stop=stop_at_exit())
    gc.freeze()  # this process ends with the run: its exit skips the garbage collection of everything torch made


# ----------------------------------------------------------------------------- Ray Train (workers >= 1)


def build_torch_trainer(point: dict, spec: StudySpec, trial_id: str, storage_path: str, callbacks: list | None = None):
    """The Ray Train run of one trial, stored as `storage_path/train-<trial id>` so that a restarted
    trial resumes it; `callbacks` are Train callbacks (the trial driver passes the one that forwards
    each epoch to Tune)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    r = spec.tune.resources
    use_gpu = r.gpu_per_worker > 0
    per_worker = {"CPU": r.cpus_per_worker, **({"GPU": r.gpu_per_worker} if use_gpu else {})}
    return TorchTrainer(
        worker_main,
        train_loop_config={"point": point, "spec": spec, "trial_id": trial_id},
        # NCCL wants one whole GPU per worker; one worker (any GPU share) or CPU workers use gloo
        torch_config=TorchConfig(backend="nccl" if use_gpu and r.workers > 1 else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=r.workers, use_gpu=use_gpu, resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=train_run_name(trial_id),
            storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(  # the best by the study's metric, and the latest (always kept)
                num_to_keep=1, checkpoint_score_attribute=spec.tune.metric, checkpoint_score_order=spec.tune.mode
            ),
            callbacks=list(callbacks or []),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # Train's INFO lines (worker group, reports) stay in its log files
        ),
    )


def epoch_tune_knows(pointer_folder: str) -> int:
    """The epoch of a Ray Train trial's pointer checkpoint, as Tune's state knows it: a pointer that
    --resume put in place of a deleted one may be newer, and is marked with the older epoch."""
    from .forward import POINTER_FILE

    with open(os.path.join(pointer_folder, POINTER_FILE)) as f:
        epoch = json.load(f).get("epoch") or 0
    noted = restored_as(pointer_folder)
    return min(epoch, noted) if noted is not None else epoch


def run_train(config: dict, spec: StudySpec) -> None:
    """Fit the trial's Train run in a thread; report each forwarded epoch to Tune from here."""
    import tempfile
    import threading

    import ray
    from ray import tune
    from ray.util.queue import Queue

    from .forward import POINTER_FILE, ForwardToTrial, unreported_epochs

    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", WORKER_GROUP_START_TIMEOUT_S)
    trial_id = tune.get_context().get_trial_id()

    def forward(item: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="mhss-pointer-") as folder:
            pointer = {
                "train_run": train_run_name(trial_id),
                "train_checkpoint": item["checkpoint_path"],
                "epoch": item["metrics"].get("epoch"),
            }
            with open(os.path.join(folder, POINTER_FILE), "w") as f:
                json.dump(pointer, f)
            tune.report(item["metrics"], checkpoint=tune.Checkpoint.from_directory(folder))

    # a restarted trial: first the epochs Train persisted after the one Tune restored it from
    reported_epoch = 0
    if (restored := tune.get_checkpoint()) is not None:
        with restored.as_directory() as folder:
            reported_epoch = epoch_tune_knows(folder)
    for item in unreported_epochs(f"{study_path(spec)}/{train_run_name(trial_id)}", reported_epoch):
        forward(item)

    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})  # one epoch in flight, as Tune's own callback
    trainer = build_torch_trainer(config, spec, trial_id, study_path(spec), [ForwardToTrial(queue)])
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised below, in the trial's own thread
            outcome["error"] = exc
        finally:
            try:
                queue.put(None)
            except ray.exceptions.RayActorError:  # the trial is being stopped (ASHA) and its queue is gone: nobody waits
                pass

    thread = threading.Thread(target=fit, name=f"fit-{trial_id}", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            forward(item)
        thread.join()
    finally:
        if not thread.is_alive():  # the run is over: nothing puts into the queue any more, so its actor can go now
            queue.shutdown(force=True)
    if "error" in outcome:
        raise outcome["error"]
    if getattr(outcome.get("result"), "error", None) is not None:
        raise outcome["result"].error


def trial_main(config: dict, spec: StudySpec) -> None:
    """The Tune function trainable: one sampled configuration, trained epoch by epoch."""
    quiet_ray_train()
    if spec.tune.resources.workers == 0:
        run_in_process(config, spec)
    else:
        run_train(config, spec)
    gc.freeze()  # Tune ends this actor's process with the trial (no actor reuse): skip its last garbage collection
