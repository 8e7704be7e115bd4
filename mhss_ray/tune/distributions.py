"""The distributions a `search:` dimension may use: one row of `DISTRIBUTIONS` each, with its
parameters, how it becomes a Tune domain, and the properties the checks read. A new sampler is a new row.

    search:
      method.alpha: {dist: uniform, low: 0.25, high: 2.0}
      method.warmup: {dist: randint, low: 3, high: 9}      # 3 to 8: randint's high is never sampled
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..yaml_files import show_value
from ..errors import UserError


def _tune():
    from ray import tune  # only when the study starts: the space file is checked without Ray

    return tune


@dataclass(frozen=True)
class Distribution:
    params: tuple[str, ...]
    domain: Callable[[dict], Any]  # params -> a Tune search domain
    integer: bool = False  # samples whole numbers only
    values: bool = False  # takes a list of values (choice, grid) instead of a range
    grid: bool = False  # every value in every sample (Tune's grid search), not sampled
    exclusive_high: bool = False  # high is never sampled (randint)
    positive: bool = False  # low must be above 0 (loguniform)


DISTRIBUTIONS = {
    "uniform": Distribution(("low", "high"), lambda p: _tune().uniform(p["low"], p["high"])),
    "loguniform": Distribution(("low", "high"), lambda p: _tune().loguniform(p["low"], p["high"]), positive=True),
    "quniform": Distribution(("low", "high", "q"), lambda p: _tune().quniform(p["low"], p["high"], p["q"])),
    "randint": Distribution(("low", "high"), lambda p: _tune().randint(p["low"], p["high"]), integer=True, exclusive_high=True),
    "qrandint": Distribution(("low", "high", "q"), lambda p: _tune().qrandint(p["low"], p["high"], p["q"]), integer=True),
    "choice": Distribution(("values",), lambda p: _tune().choice(list(p["values"])), values=True),
    "grid": Distribution(("values",), lambda p: _tune().grid_search(list(p["values"])), values=True, grid=True),
}


@dataclass
class Dimension:
    key: str  # a config key path; per-class dimensions end in [i]
    dist: str
    params: dict

    @property
    def kind(self) -> Distribution:
        return DISTRIBUTIONS[self.dist]

    def domain(self):
        return self.kind.domain(self.params)

    def describe(self) -> str:
        p = self.params
        if self.kind.values:
            return f"{self.dist}({', '.join(map(str, p['values']))})"
        return f"{self.dist}({', '.join(f'{p[k]:g}' for k in self.kind.params)})"

    def extremes(self) -> list[tuple[str, Any]]:
        """(parameter, value) of the values a sample can take at its ends (every value of a list)."""
        p = self.params
        if self.kind.values:
            return [("values", v) for v in p["values"]]
        return [("low", p["low"]), ("high", p["high"] - 1 if self.kind.exclusive_high else p["high"])]

    def bounds(self) -> tuple[float, float]:
        if self.kind.values:
            values = sorted(float(v) for v in self.params["values"])
            return values[0], values[-1]
        return self.params["low"], self.params["high"]

    def inside(self, value: Any) -> bool:
        p, kind = self.params, self.kind
        if kind.values:
            return value in p["values"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if kind.integer and not float(value).is_integer():
            return False
        return p["low"] <= value < p["high"] if kind.exclusive_high else p["low"] <= value <= p["high"]


def _number(raw: Any, integer: bool, where: str):
    v = raw
    if isinstance(v, str):  # PyYAML reads 1e-3 as a string
        try:
            v = float(v)
        except ValueError:
            pass
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (integer and not float(v).is_integer()):
        raise UserError(f"{where}: expected {'an integer' if integer else 'a number'}, got {show_value(raw)}")
    return int(v) if integer else float(v)


def parse_dimension(key: str, spec: Any, where: str, integer_key: bool) -> Dimension:
    """A dimension from its YAML mapping; `integer_key`: the config key takes whole numbers only."""
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping like {{dist: uniform, low: 0, high: 1}}, got {show_value(spec)}")
    dist = spec.get("dist")
    if dist not in DISTRIBUTIONS:
        raise UserError(f"{where}.dist: expected one of {', '.join(DISTRIBUTIONS)}, got {show_value(dist)}")
    kind = DISTRIBUTIONS[dist]
    params = {k: v for k, v in spec.items() if k not in ("dist", "per_class")}
    for k in params:
        if k not in kind.params:
            raise UserError(f"{where}.{k}: not a parameter of {dist} (it takes {', '.join(kind.params)})")
    for k in kind.params:
        if k not in params:
            raise UserError(f"{where}.{k}: required by {dist}")
    if kind.values:
        if not isinstance(params["values"], list) or not params["values"]:
            raise UserError(f"{where}.values: expected a non-empty list, got {show_value(params['values'])}")
        return Dimension(key, dist, params)
    for k in kind.params:
        params[k] = _number(params[k], kind.integer, f"{where}.{k}")
    if params["low"] >= params["high"]:
        raise UserError(f"{where}: low ({params['low']:g}) must be below high ({params['high']:g})")
    if kind.positive and params["low"] <= 0:
        raise UserError(f"{where}.low: {dist} needs low > 0, got {params['low']:g}")
    if "q" in params:
        if params["q"] <= 0:
            raise UserError(f"{where}.q: expected a positive step, got {params['q']:g}")
        for k in ("low", "high"):  # Tune rounds every sample to a multiple of q: a bound that is not one is overshot
            steps = params[k] / params["q"]
            if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
                raise UserError(
                    f"{where}.{k}: {params[k]:g} is not a multiple of q {params['q']:g}; {dist} would round it to "
                    f"{round(steps) * params['q']:g}"
                )
    whole = kind.integer or ("q" in params and float(params["q"]).is_integer())
    if integer_key and not whole:
        raise UserError(f"{where}.dist: {key} takes whole numbers; {dist} samples fractions (use randint or qrandint)")
    return Dimension(key, dist, params)
