"""Output folders a tool owns: it deletes only what it can prove it wrote, never what it reads.

A tool that writes a folder (an `mhss-train` run, an `mhss-analyze` report) first puts a marker
file in it. Replacing the folder later (`--overwrite`, a second analysis into the same `--out`)
needs that marker, removes only the entries the tool writes (by name), and is refused when the
folder holds anything else, is a folder the tool reads from (or holds one, or lies inside one), or
is the current folder or a parent of it. Everything is checked before anything is written.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class FolderKind:
    tool: str  # the command that writes it, for messages
    marker: str  # file name that proves the tool wrote the folder
    entries: tuple[str, ...]  # glob patterns of everything the tool writes there (the marker included)

    def owns(self, folder: Path) -> bool:
        return (folder / self.marker).is_file()

    def wrote(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.entries)


def write_marker(folder: Path, kind: FolderKind) -> None:
    (folder / kind.marker).write_text(json.dumps({"written_by": kind.tool, "format": 1}) + "\n")


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def inside(path: str | Path, folder: str | Path) -> bool:
    """`path` is `folder` or lies inside it (both resolved: ~, links, ..)."""
    return _inside(_resolved(path), _resolved(folder))


def check_not_reading(out: str | Path, reads: dict[str, str | Path | None], tool: str, inside_ok: bool = False) -> None:
    """`out` must not be or hold a path the tool reads ({what: path}) or the current folder, nor lie
    inside a read folder unless `inside_ok` (a run folder under the data root changes no input)."""
    target = _resolved(out)
    if _inside(Path.cwd().resolve(), target):
        raise UserError(f"--out {out}: is the current folder or holds it; {tool} writes into a folder of its own (choose another --out)")
    for what, path in reads.items():
        if path is None or "://" in str(path):
            continue
        read = _resolved(path)
        if _inside(read, target) or (_inside(target, read) and not inside_ok):
            relation = "is" if read == target else ("holds" if _inside(read, target) else "lies inside")
            raise UserError(f"--out {out}: {relation} the {what} that {tool} reads ({path}); choose another --out")


def check_writable(folder: str | Path, key: str) -> None:
    """`folder` (or the nearest existing parent it would be created in) is a writable folder."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}: {folder} exists and is not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{key}: {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{key}: {folder}: cannot write in {probe} (read-only or not yours)")


def check_replaceable(folder: Path, kind: FolderKind, what: str) -> None:
    """A non-empty `folder` may be replaced only when `kind` wrote it and it holds nothing else."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not kind.owns(folder):
        raise UserError(
            f"{folder}: holds files that {kind.tool} did not write (no {kind.marker} marker), so it is not replaced; choose "
            f"another {what} or empty it yourself"
        )
    foreign = sorted(e.name for e in folder.iterdir() if not kind.wrote(e.name))
    if foreign:
        raise UserError(
            f"{folder}: holds {foreign[0]!r}, which {kind.tool} did not write, so the folder is not replaced; move it out or "
            f"choose another {what}"
        )


def remove_owned(folder: Path, kind: FolderKind) -> None:
    """Delete what `kind` wrote in `folder` (checked with check_replaceable first), then the empty folder."""
    check_replaceable(folder, kind, "folder")
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    folder.rmdir()


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def user_mode(directory: bool = True) -> int:
    """The permissions a new file or folder gets under the user's umask (tempfile uses 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


TABLE_SUFFIXES = (".parquet", ".csv")


def check_new_table(path: str | Path, key: str, suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> Path:
    """A table file a command is about to write: one of `suffixes`, not there yet (an existing file is never
    replaced: it may be anyone's), in a folder that exists or can be made and is writable."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{key}: {path}: expected a file name ending in {' or '.join(suffixes)}")
    if path.exists():
        raise UserError(f"{key}: {path} exists; choose another file (nothing is overwritten)")
    check_writable(path.parent, key)
    return path


def write_table(table, path: Path) -> None:
    """Write a pandas DataFrame as Parquet or CSV (by the suffix), whole or not at all, and never over a file
    that appeared since `check_new_table`: the table goes to a temporary file this call creates, then is
    linked to its name (which fails if the name is taken)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
        tmp.chmod(user_mode(directory=False))  # mkstemp makes it private; the table is the user's, under their umask
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise UserError(f"--out: {path} appeared while it was written; nothing was overwritten") from None
        except OSError:  # a filesystem without hard links: the name was free a moment ago (check_new_table)
            if path.exists():
                raise UserError(f"--out: {path} appeared while it was written; nothing was overwritten") from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # the temporary file this call made
