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
