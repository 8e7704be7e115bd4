"""Reading the user's YAML files strictly: one-line errors, no duplicate keys, bounded size.

PyYAML's `safe_load` lets the last of two equal keys win silently (a config whose first `method:`
said `asl` trained `coteaching`), and its aliases let a few hundred bytes stand for billions of
values (`a: &a [1,1,1,1,1,1,1,1,1]`, `b: &b [*a,*a,...]`, ...): whatever walks the result later
(validation, error messages, deep copies) then runs for minutes. Both are refused here, naming the
file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

# A run config or search space holds a few hundred values; Sewer-ML's class weights and 20
# per-class rates are the largest lists. Far above that, far below a slow walk.
MAX_VALUES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping holding the same key twice."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {str(key)[:60]!r} (first at line {first + 1}; the second would silently win)",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def count_values(data: Any, limit: int = MAX_VALUES) -> int:
    """Values in `data` with every alias expanded, counting stops just above `limit`."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def parse_yaml(text: str, where: str) -> Any:
    """`text` as YAML, or a one-line UserError that starts with `where` (a file name or a --set flag)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: invalid YAML{at}: {problem}") from None
    if count_values(data) > MAX_VALUES:
        raise UserError(f"{where}: expands to more than {MAX_VALUES:,} values (nested YAML aliases?); a config holds a few hundred")
    return data


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; every failure is a one-line UserError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level, got {show_value(data)}")
    return data


def show_value(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, cut to `limit` characters (error lines stay short)."""
    text = repr(value) if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
