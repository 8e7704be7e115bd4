"""Label tables read with pyarrow into arrays, validated once, with errors that name file and line.

Sewer-ML's training CSV has 1.04 M rows: it is parsed by pyarrow's multi-threaded reader straight
into columns, and every check below is a vectorised operation on those columns; no per-row Python
object is built. Line numbers in messages count the header as line 1 (what an editor shows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import UserError


def require_file(path: Path, what: str = "file") -> Path:
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    return path


def row_name(path: Path, row: int) -> str:
    """Where data row `row` (0-based) of a table file is, as a person would look for it."""
    return f"{path} row {row + 1}" if path.suffix == ".parquet" else f"{path} line {row + 2}"


def csv_header(path: Path, delimiter: str = ",") -> list[str]:
    with require_file(path).open(encoding="utf-8-sig", errors="replace") as f:
        return [h.strip().strip('"') for h in f.readline().rstrip("\r\n").split(delimiter)]


def read_table(
    path: Path, delimiter: str = ",", text_columns: tuple[str, ...] = (), label_columns: tuple[str, ...] | None = None
) -> pa.Table:
    """A CSV (header row, `delimiter`) or Parquet file as one pyarrow table. A CSV row with the wrong
    number of fields is an error naming its line; `text_columns` are read as strings whatever they hold.
    With `label_columns`, a CSV is read as those columns (int8) and the text columns only: a million
    rows then take tens of MB, not the hundreds of every column as int64."""
    require_file(path)
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:160]})") from None
    types = {c: pa.string() for c in text_columns}
    include = None
    if label_columns is not None:
        header = csv_header(path, delimiter)
        missing = [c for c in (*text_columns, *label_columns) if c not in header]
        if missing:
            raise UserError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header[:30])})")
        include = [*text_columns, *label_columns]
        types.update({c: pa.int8() for c in label_columns})
    try:
        table, bad = _read_csv(path, delimiter, types, include, use_threads=True)
    except UserError:
        if label_columns is None:
            raise
        # a label that is not a small integer: read them as text, label_matrix names the row
        types.update({c: pa.string() for c in label_columns})
        table, bad = _read_csv(path, delimiter, types, include, use_threads=True)
    if bad is not None:
        where = f"{path} line {bad.number}" if bad.number is not None else str(path)
        raise UserError(f"{where}: expected {bad.expected_columns} fields, got {bad.actual_columns}")
    return table


def _read_csv(path: Path, delimiter: str, types: dict, include: list[str] | None, use_threads: bool):
    """(table, first invalid row or None). Only the single-threaded read takes the Python callback
    that collects invalid rows: a callback on Arrow's threads, still running when the process exits
    after an error, aborted it now and then ('terminate called without an active exception'). A
    row with the wrong number of fields fails the multi-threaded read, and the single-threaded
    read then finds it, with its line number."""
    bad_rows = []

    def on_invalid(row) -> str:
        bad_rows.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=use_threads),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=None if use_threads else on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include),
        )
    except pa.ArrowInvalid as exc:
        if use_threads and "columns, got" in str(exc):
            return _read_csv(path, delimiter, types, include, use_threads=False)
        raise UserError(f"{path}: cannot parse ({str(exc).splitlines()[0][:160]})") from None
    if not bad_rows:
        return table, None
    return table, min(bad_rows, key=lambda r: r.number if r.number is not None else 1 << 62)


def require_columns(table: pa.Table, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r} (columns: {', '.join(table.column_names[:30])})")


def first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def label_matrix(table: pa.Table, columns: list[str], path: Path) -> np.ndarray:
    """The N x C uint8 matrix of 0/1 label columns; a missing or non-0/1 value names its row."""
    require_columns(table, columns, path)
    out = np.empty((table.num_rows, len(columns)), dtype=np.uint8)
    if table.num_rows == 0:  # a header alone: its columns have no type to check (the empty split is named later)
        return out
    for j, name in enumerate(columns):
        col = table.column(name)
        if col.null_count:
            raise UserError(
                f"{row_name(path, first_true(pc.is_null(col).to_numpy(zero_copy_only=False)))}: column {name!r} is empty (expected 0 or 1)"
            )
        if pa.types.is_boolean(col.type):
            out[:, j] = col.to_numpy(zero_copy_only=False)
            continue
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            values = col.to_numpy(zero_copy_only=False)
            bad = first_true(~np.isin(values.astype(str), ["0", "1"]))
            raise UserError(f"{row_name(path, bad)}: column {name!r} holds {str(values[bad])!r} (expected 0 or 1)")
        values = col.to_numpy()
        bad = (values != 0) & (values != 1)
        if bad.any():
            i = first_true(bad)
            raise UserError(f"{row_name(path, i)}: column {name!r} holds {values[i].item()!r} (expected 0 or 1)")
        out[:, j] = values
    return out


def string_column(table: pa.Table, name: str, path: Path) -> pa.StringArray:
    """A non-empty string column as one contiguous array (file names stay in Arrow memory)."""
    require_columns(table, [name], path)
    col = table.column(name).cast(pa.string()).combine_chunks()
    empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)).to_numpy(zero_copy_only=False)
    if empty.any():
        raise UserError(f"{row_name(path, first_true(empty))}: column {name!r} is empty")
    return col


def file_column(table: pa.Table, name: str, path: Path) -> pa.StringArray:
    """The image-file column: non-empty, and each file once (a second row for the same image, maybe
    with other labels, is refused naming both rows: which one is right is the user's call)."""
    col = string_column(table, name, path)
    rows = pa.table({"name": col, "row": pa.array(np.arange(len(col), dtype=np.int64))})
    groups = rows.group_by("name").aggregate([("row", "min"), ("row", "max"), ("row", "count")])
    twice = groups.filter(pc.greater(groups["row_count"], 1))
    if twice.num_rows:
        first = int(pc.min(twice["row_min"]).as_py())
        i = int(pc.index(twice["row_min"], first).as_py())
        second = int(twice["row_max"][i].as_py())
        raise UserError(
            f"{row_name(path, second)}: image {col[first].as_py()!r} is listed again (first at "
            f"{row_name(path, first).removeprefix(str(path) + ' ')})"
        )
    return col


def split_labels(col: pa.StringArray, classes: list[str] | None, path: Path, column: str) -> tuple[list[str], np.ndarray]:
    """A column of ';'-separated class names -> (class names, N x C 0/1). Without a class list the
    classes are the sorted names found; with one, a name outside it is an error naming its row."""
    parts = pc.split_pattern(pc.fill_null(col, ""), ";")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    rows = pc.list_parent_indices(parts).to_numpy()
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    flat, rows = flat.filter(pa.array(keep)), rows[keep]
    found = pc.unique(flat).to_pylist()
    if classes is None:
        classes = sorted(found)
    code = pc.index_in(flat, value_set=pa.array(classes, pa.string())).to_numpy(zero_copy_only=False)
    unknown = np.isnan(code) if code.dtype.kind == "f" else code < 0
    if unknown.any():
        i = first_true(unknown)
        raise UserError(
            f"{row_name(path, int(rows[i]))}: column {column!r} names unknown class {flat[i].as_py()!r} (classes: {', '.join(classes)})"
        )
    labels = np.zeros((len(col), len(classes)), dtype=np.uint8)
    labels[rows, code.astype(np.int64)] = 1
    return classes, labels
