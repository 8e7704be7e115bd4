"""The study record: `mhss_study.json` in a study folder, what analysis needs and Tune's files do not
say (how trials were judged and stopped, the class names behind eps_<class>, the base run config).
`mhss-tune` writes it when a study starts (tune/cluster.py builds its content), `mhss-analyze`
reads it; this neutral module owns the file name and both directions, so neither imports the other.
Local folders and object storage (s3://, gs://) alike, through pyarrow's filesystems."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import UserError

STUDY_INFO = "mhss_study.json"
PLAIN_NAME = re.compile(r"^[^/\\\0]+$")

# How a study names its searched values wherever they are shown (tables, the live table, trackers):
# a per-class noise rate `method.noise_rates[3]` is `eps_<class 3>`; beyond NAMED_CLASSES classes the
# rates are summarised by their mean.
PER_CLASS = re.compile(r"^method\.noise_rates\[(\d+)\]$")
NAMED_CLASSES = 4

# A forked trial's warm-up rows, reported from the shared warm-up's prefix run (tune/warmup_share.py),
# carry this column: the analysis counts them as trained once, by the prefix.
SHARED_ROW = "shared_warmup"


def column_name(key: str, class_names: list[str]) -> str:
    """A readable name for a searched key: per-class noise rates become eps_<class>."""
    m = PER_CLASS.match(key)
    if m and int(m.group(1)) < len(class_names):
        return f"eps_{class_names[int(m.group(1))]}"
    return key


def filesystem(path: str, resolve: bool = False):
    """(pyarrow filesystem, path inside it) of a local folder or a storage URI; `resolve` makes a local
    path absolute and turns an unreadable URI into a UserError naming it."""
    import pyarrow.fs

    if not resolve:
        return pyarrow.fs.FileSystem.from_uri(path)
    if "://" not in path:
        path = str(Path(path).expanduser().resolve())
    try:
        return pyarrow.fs.FileSystem.from_uri(path)
    except (pyarrow.lib.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path}: cannot open ({str(exc).splitlines()[0][:160]})") from None


def write_record(path: str, record: dict) -> None:
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)
    with fs.open_output_stream(f"{inner}/{STUDY_INFO}") as f:
        f.write((json.dumps(record, indent=2, default=str) + "\n").encode())


def read_record(path: str) -> dict:
    """The study's record, or {} for a study run before it was written. Its name becomes file names
    of the analysis, so it must be a plain name (a crafted `../../x` is refused)."""
    fs, inner = filesystem(path, resolve=True)
    target = f"{inner.rstrip('/')}/{STUDY_INFO}"
    where = f"{path.rstrip('/')}/{STUDY_INFO}"
    try:
        with fs.open_input_stream(target) as f:
            raw = f.readall()
    except (FileNotFoundError, OSError):
        return {}
    try:
        record = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: corrupt ({exc.__class__.__name__}); mhss-tune writes it when a study starts") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: corrupt (expected a JSON object)")
    name = record.get("name")
    if name is not None and (not isinstance(name, str) or not PLAIN_NAME.match(name) or name in (".", "..")):
        raise UserError(f"{where}: name {str(name)[:60]!r} is not a plain folder name")
    return record
