"""Where a study lives: storage URIs and the study folder."""

from __future__ import annotations

from pathlib import Path

from .space import StudySpec


def storage_uri(path: str) -> str:
    """Tune wants an absolute local path or a URI (s3://, gs://, ...)."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def study_path(spec: StudySpec) -> str:
    """The study's folder: Tune's files, and one `train-<trial id>` folder per Ray Train run."""
    return f"{storage_uri(spec.tune.storage_path).rstrip('/')}/{spec.name}"


def holds_study(path: str) -> bool:
    """True when `path` has Tune's experiment state (a study that ran, finished or not)."""
    from ray import tune

    return tune.Tuner.can_restore(path)


def remove_study(path: str) -> None:
    """Delete a study folder, local or remote (pyarrow's filesystems)."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    fs.delete_dir(inner)
