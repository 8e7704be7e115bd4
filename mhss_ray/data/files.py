"""Checking that a table's image files exist: the folder is listed once and the names are matched
against that listing in one vectorised look-up (one stat() per file would take minutes on NFS for
Sewer-ML's million images)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UserError
from .tables import first_true, row_name


CHUNK = 65536


def list_files(folder: Path, follow_links: bool = False, escapes: dict | None = None) -> pa.StringArray:
    """Every file under `folder`, as paths relative to it with '/' separators. Names move into Arrow
    memory in chunks, so a million files never sit in one Python list. Linked folders are followed
    once each: a link back to a folder already listed (a loop) is not entered again. A link that leads
    outside `folder` is left out unless `follow_links` (data.follow_links), like a `../` name: a run
    reads the dataset folder and nothing else; `escapes` receives {its relative name: its target}."""
    chunks: list[pa.Array] = []
    found: list[str] = []
    stack = [(str(folder), "")]
    seen: set[tuple[int, int]] = set()
    top = os.path.realpath(folder)
    while stack:
        path, prefix = stack.pop()
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(path) as entries:
                for entry in entries:
                    if not follow_links and entry.is_symlink():
                        target = os.path.realpath(entry.path)
                        if os.path.commonpath([top, target]) != top:
                            if escapes is not None:
                                escapes[prefix + entry.name] = target
                            continue
                    if _is_dir(entry):
                        stack.append((entry.path, prefix + entry.name + "/"))
                    else:
                        found.append(prefix + entry.name)
                        if len(found) == CHUNK:
                            chunks.append(pa.array(found, pa.string()))
                            found = []
        except OSError as exc:
            raise UserError(f"{path}: cannot list ({exc.strerror or exc.__class__.__name__})") from None
    chunks.append(pa.array(found, pa.string()))
    return pa.chunked_array(chunks, pa.string()).combine_chunks()


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to nowhere, or one that loops on itself: listed as a file, never opened here
        return False


def missing_mask(names: pa.StringArray, listing: pa.StringArray) -> np.ndarray:
    return ~pc.is_in(names, value_set=listing).to_numpy(zero_copy_only=False)


def check_files(
    names: pa.StringArray,
    folder: Path,
    table: Path,
    listing: pa.StringArray | None = None,
    follow_links: bool = False,
    escapes: dict | None = None,
) -> None:
    """Every name of `table` is a file under `folder`; the first missing one is named with its row,
    and why: not there, outside the folder, or reached through a link that leads outside it."""
    escapes = {} if escapes is None else escapes  # filled by the listing (or by the caller's)
    missing = missing_mask(names, list_files(folder, follow_links, escapes) if listing is None else listing)
    if missing.any():
        i = first_true(missing)
        raise UserError(f"{row_name(table, i)}: image {why_missing(names[i].as_py(), folder, escapes)}")


def why_missing(name: str, folder: Path, escapes: dict[str, str]) -> str:
    normal = os.path.normpath(name)
    where = os.path.normpath(os.path.join(folder, name))
    if os.path.commonpath([os.path.normpath(folder), where]) != os.path.normpath(folder):
        return f"{name} is outside the dataset folder {folder} (image paths are relative to it and stay inside it)"
    if (normal != name or os.path.isabs(name)) and os.path.exists(where):
        return f"{name}: write it as {os.path.relpath(where, folder)} (paths are matched as written, relative to {folder})"
    parts = normal.split(os.sep)
    for n in range(1, len(parts) + 1):
        link = "/".join(parts[:n])
        if link in escapes:
            through = "is a link" if link == "/".join(parts) else f"is read through the link {link}"
            return f"{name} {through} outside the dataset folder (set data.follow_links: true to allow it), to {escapes[link]}"
    return f"{folder / name} not found"
