"""Where a study lives: storage URIs and the study folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import UserError
from ..outputs import FolderKind
from ..study_record import STUDY_INFO, write_record
from .lock import LOCK_FILE
from .space import StudySpec


def storage_uri(path: str) -> str:
    """Tune wants an absolute local path or a URI (s3://, gs://, ...)."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def check_storage(storage_path: str, address: str | None, shared: bool) -> None:
    """On a cluster of several machines every node writes its trials' checkpoints and results into
    the storage path, and the driver reads them back: a folder on one machine's disk is not enough.
    A URI (s3://, gs://, ...) always works; a local path only when mhss-tune starts the cluster
    itself (one machine) or the user declares the folder shared (an NFS mount) with --shared-storage."""
    if "://" in storage_path or address in (None, "local") or shared:
        return
    raise UserError(
        f"tune.storage_path: {storage_path} is local, the other nodes of --address {address} cannot write it; "
        "use s3://..., gs://... or an NFS folder with --shared-storage"
    )


def study_path(spec: StudySpec) -> str:
    """The study's folder: Tune's files, and one `train-<trial id>` folder per Ray Train run."""
    return f"{storage_uri(spec.tune.storage_path).rstrip('/')}/{spec.name}"


def holds_study(path: str) -> bool:
    """True when `path` has Tune's experiment state (a study that ran, finished or not)."""
    from ray import tune

    return tune.Tuner.can_restore(path)


# Everything mhss-tune and Tune write into a study folder; --overwrite removes these and nothing else.
STUDY = FolderKind(
    "mhss-tune",
    STUDY_INFO,
    (
        STUDY_INFO, LOCK_FILE, ".validate_storage_marker", "tuner.pkl", "trainable.pkl", "experiment_state-*", "search_gen_state-*",
        "searcher-state-*", "basic-variant-state-*", "trial_main_*", "train-*", "*.tmp", "warmup_prefix",
        # a trial's folder, trial_<Tune's id>: 8 hex digits (a search algorithm's trials) or 5 and a count (random search)
        "trial_[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]",
        "trial_[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]_[0-9][0-9][0-9][0-9][0-9]",
    ),
)  # fmt: skip


def _entries(path: str) -> tuple[object, list]:
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    return fs, fs.get_file_info(pyarrow.fs.FileSelector(inner.rstrip("/"), allow_not_found=True))


def check_removable(path: str) -> None:
    """A study folder may be overwritten only when mhss-tune wrote it and it holds nothing else."""
    _, entries = _entries(path)
    names = [PurePosixPath(e.path).name for e in entries]
    if STUDY_INFO not in names:
        raise UserError(
            f"{path}: holds a Tune experiment that mhss-tune did not write (no {STUDY_INFO}), so --overwrite leaves it; "
            "choose another --name"
        )
    foreign = sorted(n for n in names if not STUDY.wrote(n))
    if foreign:
        raise UserError(
            f"{path}: holds {foreign[0]!r}, which mhss-tune did not write, so --overwrite leaves the study; move it out or "
            "choose another --name"
        )
    if "://" not in path:  # a link (e.g. train-x -> a user's folder) would be followed by the recursive delete
        import os

        linked = sorted(n for n in names if os.path.islink(os.path.join(path, n)))
        if linked:
            raise UserError(
                f"{path}: {linked[0]!r} is a link, which mhss-tune never writes, so --overwrite leaves the study; remove the link yourself"
            )


def remove_study(path: str) -> None:
    """Delete what mhss-tune and Tune wrote in a study folder, local or remote (pyarrow's
    filesystems), keeping the lock of the driver that is about to start over."""
    import pyarrow.fs

    check_removable(path)
    fs, entries = _entries(path)
    for entry in entries:
        if PurePosixPath(entry.path).name == LOCK_FILE:
            continue
        if entry.type == pyarrow.fs.FileType.Directory:
            fs.delete_dir(entry.path)
        else:
            fs.delete_file(entry.path)


def study_info(spec: StudySpec) -> dict:
    """What analysis needs and Tune's files do not say: how trials were judged and stopped, the
    class names behind eps_<class>, and the base run config (the best trial's full config is the
    base plus its sampled point)."""
    t = spec.tune
    return {
        "name": spec.name,
        "space_file": spec.path.name,
        "metric": t.metric,
        "mode": t.mode,
        "max_t": spec.max_t,
        "scheduler": {"name": t.scheduler.name, "grace_period": t.scheduler.grace_period, "reduction_factor": t.scheduler.reduction_factor},
        "search_alg": t.search_alg.name,
        "num_samples": t.num_samples,
        "class_names": spec.class_names,
        "searched": [d.key for d in spec.dimensions],
        "dimensions": [{"key": d.key, "dist": d.dist, "params": d.params} for d in spec.dimensions],  # what Optuna's export declares
        "base": spec.base,
        # the prefix run's length: a forked trial's first rows (marked shared_warmup) were trained once, there
        "shared_warmup_epochs": spec.warmup_plan.epochs if spec.warmup_plan is not None else None,
    }


def write_study_info(spec: StudySpec, path: str) -> None:
    write_record(path, study_info(spec))
