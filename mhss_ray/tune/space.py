"""Search-space files: a base run config, a `search:` block of distributions, a `tune:` block.

    method:  {name: mhss}                 # the base run config (same schema as mhss-train)
    search:
      method.alpha: {dist: uniform, low: 0.25, high: 2.0}
      method.noise_rates: {per_class: true, dist: uniform, low: 0.0, high: 0.5}   # one dimension per class
    tune:
      num_samples: 8
      scheduler: {name: asha, grace_period: 3}

Everything is validated on load with the YAML key path in the message: unknown config keys, unknown
or missing distribution parameters, bounds outside the config field's own range (each bound is put
into the base config and checked by the run-config validation), grid with HyperOpt, fractional GPUs
with several workers. Search dimensions are flat keys (`method.alpha`, `method.noise_rates[3]`), which
HyperOpt and Tune's samplers handle without nesting; `trial_config` turns a sampled point back into
a RunConfig.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, get_type_hints

from ..config import FORGETTING_METHODS, METHOD_NAMES, RunConfig, apply_overrides, blame, check_forget_rates, from_dict, num, read_yaml, show_value
from ..data import class_names
from ..errors import UserError
from ..outputs import check_writable

PARAMS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "randint": ("low", "high"),
    "qrandint": ("low", "high", "q"),
    "choice": ("values",),
    "grid": ("values",),
}
PER_CLASS_KEYS = ("method.noise_rates",)
BASELINE_KEY = "baseline"  # the one key of a baseline arm's point (tune/baselines.py)
DRIVER_MEMORY_BYTES = 256 * 2**20  # a Ray Train trial's driver process (it imports Ray and torch)
METRICS = ("val_mAP", "test_mAP", "val_f1_micro", "val_f1_macro", "train_loss")
WEIGHTED_METRICS = ("val_F2_CIW", "val_F1_normal", "test_F2_CIW", "test_F1_normal")  # sewerml, or data.class_weights given


# ----------------------------------------------------------------------------- the tune: block


@dataclass
class SchedulerSection:
    name: Literal["asha", "fifo"] = "asha"
    max_t: Optional[int] = num(None, 1, 100_000)  # epochs; default: the base config's schedule.epochs
    grace_period: int = num(1, 1, 100_000)
    reduction_factor: float = num(3.0, 1.01, 100.0)
    brackets: int = num(1, 1, 10)


@dataclass
class SearchAlgSection:
    name: Literal["hyperopt", "random"] = "hyperopt"
    points_to_evaluate: Optional[list] = None  # [{search key: value, ...}, ...]
    n_initial_points: int = num(20, 1, 100_000)  # HyperOpt's random start
    seed: Optional[int] = num(None, 0, 2**31 - 1)


@dataclass
class ResourcesSection:
    workers: int = num(1, 0, 1024)  # Ray Train workers per trial; 0: the loop runs inside the Tune trial (quick CPU studies)
    cpus_per_worker: float = num(1.0, 0.1, 1024.0)
    gpu_per_worker: float = num(0.0, 0.0, 8.0)  # a fraction (e.g. 0.25) only with one worker


@dataclass
class TuneSection:
    metric: str = "val_mAP"
    mode: Literal["max", "min"] = "max"
    num_samples: int = num(8, 1, 1_000_000)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    search_alg: SearchAlgSection = field(default_factory=SearchAlgSection)
    max_concurrent_trials: int = num(2, 1, 100_000)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    storage_path: str = "runs/studies"  # a local folder, an NFS mount, s3://... or gs://...
    name: Optional[str] = None  # default: the space file's name
    max_failures: int = num(1, -1, 1000)  # retries of a failed trial (-1: forever)
    baselines: list = field(default_factory=list)  # methods run once on the base config beside the searched trials


def check_name(name: str, key: str) -> str:
    """A study name is one folder name inside the storage path: never a path of its own."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise UserError(f"{key}: expected a plain folder name (no '/', '..' or spaces around it), got {show_value(name)}")
    return name


def _check_tune(t: TuneSection, cfg: RunConfig) -> None:
    if t.name is not None:
        check_name(t.name, "tune.name")
    for i, arm in enumerate(t.baselines):
        if arm not in METHOD_NAMES:
            raise UserError(f"tune.baselines[{i}]: expected one of {', '.join(METHOD_NAMES)}, got {show_value(arm)}")
        if arm in t.baselines[:i]:
            raise UserError(f"tune.baselines[{i}]: {arm} is listed twice (each arm runs once)")
    if t.scheduler.name == "asha" and t.scheduler.grace_period > (t.scheduler.max_t or cfg.schedule.epochs):
        max_t = t.scheduler.max_t or cfg.schedule.epochs
        raise UserError(f"tune.scheduler.grace_period: {t.scheduler.grace_period} is beyond max_t {max_t}: ASHA would never compare trials")
    metrics = METRICS + (WEIGHTED_METRICS if cfg.data.name == "sewerml" or cfg.data.class_weights else ())
    if t.metric not in metrics:
        raise UserError(f"tune.metric: expected one of {', '.join(metrics)}, got {show_value(t.metric)}")
    r = t.resources
    g = r.gpu_per_worker
    if r.workers > 1 and g > 0 and (g < 1 or not float(g).is_integer()):
        raise UserError(f"tune.resources.gpu_per_worker: {g:g} GPUs per worker with {r.workers} workers; several workers need whole GPUs (fractions only with workers: 0 or 1)")
    if g > 1 and not float(g).is_integer():
        raise UserError(f"tune.resources.gpu_per_worker: expected a fraction <= 1 or a whole number, got {g:g}")


# ----------------------------------------------------------------------------- the search: block


@dataclass
class Dimension:
    key: str  # a config key path; per-class dimensions end in [i]
    dist: str
    params: dict

    def domain(self):
        from ray import tune

        p = self.params
        if self.dist == "grid":
            return tune.grid_search(list(p["values"]))
        if self.dist == "choice":
            return tune.choice(list(p["values"]))
        if self.dist in ("quniform", "qrandint"):
            return getattr(tune, self.dist)(p["low"], p["high"], p["q"])
        return getattr(tune, self.dist)(p["low"], p["high"])

    def describe(self) -> str:
        p = self.params
        if self.dist in ("choice", "grid"):
            return f"{self.dist}({', '.join(map(str, p['values']))})"
        return f"{self.dist}({', '.join(f'{p[k]:g}' for k in PARAMS[self.dist])})"


_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")


def set_key(data: dict, key: str, value: Any) -> None:
    """Set a dotted key path (with an optional trailing [i] list index) in a nested mapping."""
    m = _INDEXED.match(key)
    path = (m.group(1) if m else key).split(".")
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if m:
        lst = node.get(path[-1])
        if not isinstance(lst, list):
            lst = node[path[-1]] = []
        i = int(m.group(2))
        lst.extend([None] * (i + 1 - len(lst)))
        lst[i] = value
    else:
        node[path[-1]] = value


def _config_field(key: str):
    """The dataclass field a dotted key names, or a UserError naming the search key."""
    cls, f = RunConfig, None
    for part in key.split("."):
        if f is not None:
            cls = get_type_hints(cls)[f.name]
            if not dataclasses.is_dataclass(cls):
                raise UserError(f"search.{key}: {f.name} is not a section")
        fields = {x.name: x for x in dataclasses.fields(cls)}
        if part not in fields:
            raise UserError(f"search.{key}: unknown config key")
        f = fields[part]
    if dataclasses.is_dataclass(get_type_hints(cls)[f.name]):
        raise UserError(f"search.{key}: is a whole section; search one of its keys")
    return f


def _is_integer_key(key: str) -> bool:
    f = _config_field(_INDEXED.sub(r"\1", key))
    owner = RunConfig
    for part in _INDEXED.sub(r"\1", key).split(".")[:-1]:
        owner = get_type_hints(owner)[part]
    return get_type_hints(owner)[f.name] in (int, Optional[int])


def _check_value(base: dict, key: str, value: Any, where: str) -> None:
    """Put one candidate value into the base config and let the run-config validation judge it."""
    trial = copy.deepcopy(base)
    set_key(trial, key, value)
    try:
        from_dict(RunConfig, trial)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _dimension(base: dict, key: str, spec: Any, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping like {{dist: uniform, low: 0, high: 1}}, got {show_value(spec)}")
    dist = spec.get("dist")
    if dist not in PARAMS:
        raise UserError(f"{where}.dist: expected one of {', '.join(PARAMS)}, got {show_value(dist)}")
    params = {k: v for k, v in spec.items() if k not in ("dist", "per_class")}
    for k in params:
        if k not in PARAMS[dist]:
            raise UserError(f"{where}.{k}: not a parameter of {dist} (it takes {', '.join(PARAMS[dist])})")
    for k in PARAMS[dist]:
        if k not in params:
            raise UserError(f"{where}.{k}: required by {dist}")
    if dist in ("choice", "grid"):
        if not isinstance(params["values"], list) or not params["values"]:
            raise UserError(f"{where}.values: expected a non-empty list, got {show_value(params['values'])}")
        candidates = [("values", v) for v in params["values"]]
    else:
        integer = dist in ("randint", "qrandint")
        for k in PARAMS[dist]:
            v = params[k]
            if isinstance(v, str):  # PyYAML reads 1e-3 as a string
                try:
                    v = float(v)
                except ValueError:
                    pass
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (integer and not float(v).is_integer()):
                raise UserError(f"{where}.{k}: expected {'an integer' if integer else 'a number'}, got {show_value(params[k])}")
            params[k] = int(v) if integer else float(v)
        if params["low"] >= params["high"]:
            raise UserError(f"{where}: low ({params['low']:g}) must be below high ({params['high']:g})")
        if dist == "loguniform" and params["low"] <= 0:
            raise UserError(f"{where}.low: loguniform needs low > 0, got {params['low']:g}")
        if "q" in params and params["q"] <= 0:
            raise UserError(f"{where}.q: expected a positive step, got {params['q']:g}")
        if "q" in params:
            for k in ("low", "high"):  # Tune rounds every sample to a multiple of q: a bound that is not one is overshot
                steps = params[k] / params["q"]
                if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
                    raise UserError(f"{where}.{k}: {params[k]:g} is not a multiple of q {params['q']:g}; {dist} would round it to {round(steps) * params['q']:g}")
        if _is_integer_key(key) and (dist in ("uniform", "loguniform") or (dist == "quniform" and not float(params["q"]).is_integer())):
            raise UserError(f"{where}.dist: {key} takes whole numbers; {dist} samples fractions (use randint or qrandint)")
        # randint's high is exclusive: its largest sample is high - 1
        candidates = [("low", params["low"]), ("high", params["high"] - 1 if dist == "randint" else params["high"])]
    for name, value in candidates:
        _check_value(base, key, value, f"{where}.{name}")
    return Dimension(key, dist, params)


def _dimensions(base: dict, base_cfg: RunConfig, search: Any) -> list[Dimension]:
    if search is None:
        return []
    if not isinstance(search, dict):
        raise UserError(f"search: expected a mapping of config keys to distributions, got {show_value(search)}")
    dims = []
    for key, spec in search.items():
        key = str(key)
        where = f"search.{key}"
        _config_field(key)
        if isinstance(spec, dict) and spec.get("per_class"):
            if key not in PER_CLASS_KEYS:
                raise UserError(f"{where}.per_class: only {', '.join(PER_CLASS_KEYS)} takes one dimension per class")
            names = class_names(base_cfg)
            filled = copy.deepcopy(base)
            set_key(filled, "method.noise_rate_source", "given")
            set_key(filled, key, [0.0] * len(names))  # per-class values are checked with the others filled in
            for i in range(len(names)):
                dims.append(_dimension(filled, f"{key}[{i}]", dict(spec), where))
        else:
            dims.append(_dimension(base, key, spec, where))
    return dims


# ----------------------------------------------------------------------------- the study


@dataclass
class StudySpec:
    path: Path
    base: dict  # the validated base run config, as a mapping
    base_config: RunConfig
    dimensions: list[Dimension]
    tune: TuneSection
    name: str
    class_names: list[str]
    arm_bases: dict = field(default_factory=dict)  # baseline arm -> its run-config mapping (the base, searched keys kept)

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.params["values"]) for d in self.dimensions if d.dist == "grid")

    @property
    def num_trials(self) -> int:
        return self.tune.num_samples * self.grid_size + len(self.tune.baselines)

    @property
    def max_t(self) -> int:
        return self.tune.scheduler.max_t or self.base_config.schedule.epochs

    def param_space(self) -> dict:
        space = {d.key: d.domain() for d in self.dimensions}
        if self.tune.baselines and self.tune.search_alg.name == "random":
            space[BASELINE_KEY] = None  # the arms lead random search's points, whose keys must be keys of the space
        return space

    def trial_config(self, point: dict) -> RunConfig:
        """The run config of one sampled point of the space ({search key: value}), or of a baseline arm."""
        if point.get(BASELINE_KEY):
            return from_dict(RunConfig, self.arm_bases[point[BASELINE_KEY]])
        point = {k: v for k, v in point.items() if k != BASELINE_KEY}  # random search: None in every searched trial
        return from_dict(RunConfig, apply_point(self.base, point))

    def trial_resources(self) -> dict:
        """Resources one trial holds while it trains: its own process (workers: 0) or its workers."""
        r = self.tune.resources
        n = max(r.workers, 1)
        return {"CPU": n * r.cpus_per_worker, "GPU": n * r.gpu_per_worker}

    def driver_resources(self) -> dict:
        """What Tune reserves for the trial's own process. With Ray Train that process only waits
        on its workers, so it holds no CPU (a CPU there can deadlock a small cluster: every CPU held
        by waiting drivers, none left for their workers), only the memory it really uses (Ray
        wants a non-empty reservation)."""
        r = self.tune.resources
        if r.workers == 0:
            return {"cpu": r.cpus_per_worker, "gpu": r.gpu_per_worker}
        return {"cpu": 0, "gpu": 0, "memory": DRIVER_MEMORY_BYTES}

    def trials_per_gpu(self) -> int | None:
        g = self.trial_resources()["GPU"]
        if g <= 0:
            return None
        return max(1, math.floor(1 / g + 1e-9)) if g < 1 else 1

    def describe(self) -> str:
        cfg, t = self.base_config, self.tune
        r = t.resources
        lines = [
            f"study {self.name} ({self.path}) -> {t.storage_path.rstrip('/')}/{self.name}",
            f"base: {cfg.data.name}, method {cfg.method.name} on {cfg.model.name}, {cfg.schedule.epochs} epochs, noise {cfg.noise.mode}",
            f"search ({len(self.dimensions)} dimensions):",
        ]
        width = max((len(d.key) for d in self.dimensions), default=0)
        lines += [f"  {d.key:<{width}}  {d.describe()}" for d in self.dimensions] or ["  (none: every trial runs the base config)"]
        arms = f" + {len(t.baselines)} baseline arm{'s' if len(t.baselines) != 1 else ''}" if t.baselines else ""
        lines.append(
            f"trials: {self.num_trials} (num_samples {t.num_samples} x {self.grid_size} grid combination{'s' if self.grid_size != 1 else ''}{arms}); "
            f"at most {t.max_concurrent_trials} at once"
        )
        if t.baselines:
            lines.append(f"baseline arms: {', '.join(t.baselines)}, each once on the base config, first; ASHA never stops them")
        s = t.scheduler
        if s.name == "asha":
            lines.append(f"scheduler: ASHA on epoch, max_t {self.max_t}, grace_period {s.grace_period}, reduction_factor {s.reduction_factor:g}, brackets {s.brackets}; metric {t.metric} ({t.mode})")
        else:
            lines.append(f"scheduler: FIFO (every trial runs {self.max_t} epochs); metric {t.metric} ({t.mode})")
        a = t.search_alg
        if a.name == "hyperopt":
            n = len(a.points_to_evaluate or [])
            lines.append(f"search algorithm: HyperOpt, {n} point{'s' if n != 1 else ''} to evaluate first, then {a.n_initial_points} random points before it models the space")
        else:
            lines.append("search algorithm: random sampling")
        res = self.trial_resources()
        how = "in-process (workers: 0, no Ray Train)" if r.workers == 0 else f"Ray Train, {r.workers} worker{'s' if r.workers > 1 else ''} x ({r.cpus_per_worker:g} CPU, {r.gpu_per_worker:g} GPU)"
        share = self.trials_per_gpu()
        gpu_text = "no GPU" if share is None else (f"{share} trials share one GPU" if share > 1 else "whole GPUs")
        lines.append(f"resources per trial: {how}: {res['CPU']:g} CPU, {res['GPU']:g} GPU; {gpu_text}")
        lines.append(f"failures: each trial retried up to {t.max_failures} time{'s' if t.max_failures != 1 else ''}")
        if _theta_dimension(self.dimensions) is not None and not any(d.key == "method.q" for d in self.dimensions):
            q = self.base_config.method.q
            lines.append(f"theta decides at the uncertainty levels of q {q}: {', '.join(f'{v:g}' for v in uncertainty_levels(q))}")
        return "\n".join(lines)


def uncertainty_levels(q: int) -> list[float]:
    """The values a full history of q predictions can give u = H(k/q) / log 2 (section 5): theta
    decides only where it crosses one of them."""
    return sorted({round(-(m * math.log2(m) + (1 - m) * math.log2(1 - m)) if 0 < m < 1 else 0.0, 4) for m in (k / q for k in range(q + 1))})


def _theta_dimension(dims: list[Dimension]) -> Optional[Dimension]:
    return next((d for d in dims if d.key == "method.theta"), None)


def _check_theta_resolves(base_cfg: RunConfig, dims: list[Dimension]) -> None:
    """A searched theta range in which no uncertainty level of the q in use lies makes every trial
    take the same decisions: a dead search dimension (revision 2)."""
    theta = _theta_dimension(dims)
    if theta is None or any(d.key == "method.q" for d in dims):
        return
    q = base_cfg.method.q
    levels = uncertainty_levels(q)
    if theta.dist in ("choice", "grid"):
        values = sorted(float(v) for v in theta.params["values"])
        low, high = values[0], values[-1]
    else:
        low, high = theta.params["low"], theta.params["high"]
    if not any(low < level <= high for level in levels):
        shown = ", ".join(f"{v:g}" for v in levels)
        raise UserError(
            f"search.method.theta: every theta in [{low:g}, {high:g}] makes the same corrections with method.q {q} (uncertainty levels {shown}); "
            "widen the range across a level or raise method.q"
        )


def _check_parallel_methods(t: TuneSection, base_cfg: RunConfig, dims: list[Dimension]) -> None:
    """DISC's mixup mixes images across the whole batch, which no worker holds when several share it."""
    if t.resources.workers <= 1:
        return
    names = {base_cfg.method.name}
    for d in dims:
        if d.key == "method.name":
            names = set(d.params["values"])
    searched = any(d.key == "method.mixup_alpha" for d in dims)
    if "disc" in names and (base_cfg.method.mixup_alpha > 0 or searched):
        raise UserError(
            f"method.mixup_alpha: DISC's mixup needs the whole batch on one worker; with tune.resources.workers {t.resources.workers} set it to 0 (and do not search it) or use one worker"
        )


def _inside(d: Dimension, value: Any) -> bool:
    p = d.params
    if d.dist in ("choice", "grid"):
        return value in p["values"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if d.dist in ("randint", "qrandint") and not float(value).is_integer():
        return False
    return p["low"] <= value < p["high"] if d.dist == "randint" else p["low"] <= value <= p["high"]


def _check_point_values(points: list[dict], dims: list[Dimension], base: dict, complete: bool = False) -> None:
    """Each starting point lies inside its dimensions and makes a valid run config; with `complete`
    (HyperOpt, which otherwise fails once Ray runs) it gives every search key."""
    by_key = {d.key: d for d in dims}
    for i, point in enumerate(points):
        where = f"tune.search_alg.points_to_evaluate[{i}]"
        for key, value in point.items():
            d = by_key[key]
            if not _inside(d, value):
                raise UserError(f"{where}.{key}: {show_value(value)} lies outside its search dimension {d.describe()}")
        missing = [d.key for d in dims if d.key not in point]
        if complete and missing:
            shown = missing[0].split("[")[0]
            raise UserError(f"{where}: no value for {shown}; HyperOpt needs every search key in a starting point (it fails once trials start)")
        try:
            from_dict(RunConfig, apply_point(base, point))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None


def _check_forget_rate_extremes(base_cfg: RunConfig, dims: list[Dimension]) -> None:
    """The largest searched alpha with the largest searched noise rate must still leave entries to train on."""
    m = base_cfg.method
    names = {m.name} | {v for d in dims if d.key == "method.name" for v in d.params["values"]}
    if not names & set(FORGETTING_METHODS):
        return
    relevant = [d for d in dims if d.key in ("method.alpha", "method.noise_rate") or d.key.startswith("method.noise_rates[")]
    top = {d.key: (max(float(v) for v in d.params["values"]) if d.dist in ("choice", "grid") else d.params["high"]) for d in relevant}
    rates = [v for k, v in top.items() if k.startswith("method.noise_rates[")]
    if not rates and m.noise_rate_source != "given" and "method.noise_rate" not in top:
        return
    alpha = top.get("method.alpha", m.alpha)
    try:
        check_forget_rates(alpha, rates or m.noise_rates or [], top.get("method.noise_rate", m.noise_rate))
    except UserError as exc:
        raise UserError(f"search: the largest searched values together: {exc}") from None


def _check_points(points: list | None, dims: list[Dimension], n_classes: int) -> None:
    keys = {d.key for d in dims}
    for i, point in enumerate(points or []):
        where = f"tune.search_alg.points_to_evaluate[{i}]"
        if not isinstance(point, dict):
            raise UserError(f"{where}: expected a mapping of search keys to values, got {show_value(point)}")
        for key, value in point.items():
            if key in PER_CLASS_KEYS and f"{key}[0]" in keys:
                scalar = isinstance(value, (int, float)) and not isinstance(value, bool)  # the same for every class
                if not scalar and (not isinstance(value, list) or len(value) != n_classes):
                    raise UserError(f"{where}.{key}: expected one number or a list of {n_classes} (one per class), got {show_value(value)}")
            elif key not in keys:
                raise UserError(f"{where}.{key}: not a search key (search keys: {', '.join(sorted(keys))})")


def _expand_points(points: list | None, n_classes: int = 0) -> list[dict]:
    """Per-class lists (or one number for every class) in points_to_evaluate become the flat [i] keys of the space."""
    out = []
    for point in points or []:
        flat = {}
        for key, value in point.items():
            if key in PER_CLASS_KEYS and isinstance(value, list):
                flat.update({f"{key}[{i}]": v for i, v in enumerate(value)})
            elif key in PER_CLASS_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool) and n_classes:
                flat.update({f"{key}[{i}]": value for i in range(n_classes)})
            else:
                flat[key] = value
        out.append(flat)
    return out


def apply_point(base: dict, point: dict) -> dict:
    """The run-config mapping of one point of the space: the base with the sampled values set
    (per-class noise rates make the forget rates use them: noise_rate_source given)."""
    data = copy.deepcopy(base)
    for key, value in point.items():
        set_key(data, key, value)
        if key.startswith("method.noise_rates["):
            set_key(data, "method.noise_rate_source", "given")
    return data


# Paths a trial opens: Tune runs each trial in its own folder (and Ray Train its workers elsewhere),
# so a path relative to where mhss-tune was started is made absolute before the trials get it.
LOCAL_PATH_KEYS = (("data", "root"), ("model", "pretrained_path"))


def _check_model_names(cfg: RunConfig, dims: list) -> None:
    """Unknown timm names are found here, not in every trial after the cluster has started."""
    import timm

    names = [("model.name", cfg.model.name)]
    names += [(f"search.model.name.values[{i}]", v) for d in dims if d.key == "model.name" for i, v in enumerate(d.params.get("values", []))]
    for where, name in names:
        if not timm.is_model(name):
            raise UserError(f"{where}: unknown timm model {name!r}")


def _absolute_paths(base: dict, cfg: RunConfig) -> dict:
    base = copy.deepcopy(base)
    for section, key in LOCAL_PATH_KEYS:
        value = getattr(getattr(cfg, section), key)  # ${VAR} already expanded
        if value is not None:
            base.setdefault(section, {})[key] = str(Path(value).expanduser().absolute())
    return base


def load_space(path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """Read and validate a search-space file; `--set` overrides apply to the base config and tune.*."""
    path = Path(path)
    data = read_yaml(path)
    try:
        search = data.get("search")
        rest = {k: v for k, v in data.items() if k != "search"}
        apply_overrides(rest, overrides or [])
        tune_raw = rest.pop("tune", None) or {}
        unsearched = copy.deepcopy(rest)  # the base as written, for the baseline arms
        _drop_searched(rest, search)
        base_cfg = from_dict(RunConfig, rest)
        rest = _absolute_paths(rest, base_cfg)
        base_cfg = from_dict(RunConfig, rest)
        tune_section = from_dict(TuneSection, tune_raw, "tune")
        _check_tune(tune_section, base_cfg)
        names = class_names(base_cfg)
        dims = _dimensions(rest, base_cfg, search)
        if tune_section.search_alg.name == "hyperopt":
            for d in dims:
                if d.dist == "grid":
                    raise UserError(f"search.{d.key}.dist: grid is not supported with tune.search_alg.name hyperopt (use choice, or search_alg random)")
        _check_parallel_methods(tune_section, base_cfg, dims)
        _check_theta_resolves(base_cfg, dims)
        _check_model_names(base_cfg, dims)
        _check_points(tune_section.search_alg.points_to_evaluate, dims, len(names))
        tune_section.search_alg.points_to_evaluate = _expand_points(tune_section.search_alg.points_to_evaluate, len(names)) or None
        _check_point_values(tune_section.search_alg.points_to_evaluate or [], dims, rest, complete=tune_section.search_alg.name == "hyperopt")
        _check_forget_rate_extremes(base_cfg, dims)
        arm_bases = _arm_bases(unsearched, tune_section, dims)
        tune_section.storage_path = _absolute_storage(tune_section.storage_path)
    except UserError as exc:
        raise blame(exc, path, overrides) from None
    name = tune_section.name or check_name(path.stem, "the space file's name (give tune.name or --name)")
    return StudySpec(path, rest, base_cfg, dims, tune_section, name, names, arm_bases)


def _arm_bases(unsearched: dict, t: TuneSection, dims: list[Dimension]) -> dict:
    """Each baseline arm's run config: the base as written (a searched key keeps the base's value,
    or the default) with the arm's method; checked here, not when its trial starts."""
    if t.baselines and any(d.dist == "grid" for d in dims):
        raise UserError("tune.baselines: not with grid dimensions (random search would run each arm once per grid combination)")
    out = {}
    for i, arm in enumerate(t.baselines):
        data = copy.deepcopy(unsearched)
        data.setdefault("method", {})["name"] = arm
        try:
            cfg = from_dict(RunConfig, data)
        except UserError as exc:
            raise UserError(f"tune.baselines[{i}]: {arm} on the base config: {exc}") from None
        out[arm] = _absolute_paths(data, cfg)
    return out


def _drop_searched(base: dict, search: Any) -> None:
    """Every trial sets the searched keys, so their base values never run: they are left out of the
    base (a base warm-up as long as the epochs is no mistake when the warm-up is searched)."""
    if not isinstance(search, dict):
        return
    for key in search:
        *parents, last = str(key).split(".")
        node = base
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)


def _absolute_storage(storage: str) -> str:
    """Resolved once, here in the driver: a trial resolving a relative path would resolve it inside
    its own working folder (Tune's trial folder, Ray's session folder) and write its checkpoints there."""
    if "://" in storage:
        return storage
    check_writable(storage, "tune.storage_path")
    return str(Path(storage).expanduser().absolute())
