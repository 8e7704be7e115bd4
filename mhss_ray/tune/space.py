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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_type_hints

from ..config import (
    INDEXED_KEY,
    RunConfig,
    section_fields,
    apply_overrides,
    apply_point,
    blame,
    check_forget_rates,
    from_dict,
    read_yaml,
    set_key,
    show_value,
)
from ..data import class_names, planned_class_names
from ..errors import UserError
from ..outputs import check_writable
from ..registry import METHODS, call_entry
from .distributions import Dimension, parse_dimension
from .rungs import asha_rungs, at_onset, check_rungs, keys_acting_in_warmup, longest_warmup
from .warmup_share import PREFIX_KEY, WarmupPlan, plan_warmup
from .schema import TuneSection, check_name, check_tune

PER_CLASS_KEYS = ("method.noise_rates",)
BASELINE_KEY = "baseline"  # the one key of a baseline arm's point (tune/baselines.py)


# ----------------------------------------------------------------------------- the search: block


def _config_field(key: str, base: dict) -> tuple[dataclasses.Field, type]:
    """The dataclass field a dotted key names and the dataclass that declares it (a plugin's own keys: its
    params, for the method or dataset the base config names), or a UserError naming the search key."""
    cls, f, owner, section = RunConfig, None, RunConfig, base
    for part in key.split("."):
        if f is not None:
            cls = get_type_hints(owner)[f.name]
            if not dataclasses.is_dataclass(cls):
                raise UserError(f"search.{key}: {f.name} is not a section")
            section = section.get(f.name) if isinstance(section, dict) else None
        fields = section_fields(cls, section.get("name") if isinstance(section, dict) else None)
        if part not in fields:
            raise UserError(f"search.{key}: unknown config key")
        f, owner = fields[part]
    if dataclasses.is_dataclass(get_type_hints(owner)[f.name]):
        raise UserError(f"search.{key}: is a whole section; search one of its keys")
    return f, owner


def _is_integer_key(key: str, base: dict) -> bool:
    f, owner = _config_field(INDEXED_KEY.sub(r"\1", key), base)
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
    """A dimension whose every extreme value, put into the base config, passes the run-config validation."""
    d = parse_dimension(key, spec, where, _is_integer_key(key, base))
    for name, value in d.extremes():
        _check_value(base, key, value, f"{where}.{name}")
    return d


def _dimensions(base: dict, base_cfg: RunConfig, search: Any, names: list[str] | None = None) -> list[Dimension]:
    if search is None:
        return []
    if not isinstance(search, dict):
        raise UserError(f"search: expected a mapping of config keys to distributions, got {show_value(search)}")
    dims = []
    for key, spec in search.items():
        key = str(key)
        where = f"search.{key}"
        _config_field(key, base)
        if isinstance(spec, dict) and spec.get("per_class"):
            if key not in PER_CLASS_KEYS:
                raise UserError(f"{where}.per_class: only {', '.join(PER_CLASS_KEYS)} takes one dimension per class")
            names = names if names is not None else class_names(base_cfg)
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
    warmup_plan: Optional[WarmupPlan] = None  # the shared warm-up (tune.share_warmup), None when the trials do not share one
    warmup_note: str = ""  # why they do not, for --dry-run
    data_warning: str = ""  # --dry-run without the dataset: what the plan assumed
    method_notes: list = field(default_factory=list)  # what the methods' own search checks say about the space

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.params["values"]) for d in self.dimensions if d.kind.grid)

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
        # random search: BASELINE_KEY None in every searched trial; PREFIX_KEY marks the shared warm-up's prefix run
        point = {k: v for k, v in point.items() if k not in (BASELINE_KEY, PREFIX_KEY)}
        return from_dict(RunConfig, apply_point(self.base, point))

    def trial_resources(self) -> dict:
        return self.tune.resources.trial()

    def driver_resources(self) -> dict:
        return self.tune.resources.driver()

    def trials_per_gpu(self) -> int | None:
        return self.tune.resources.trials_per_gpu()

    def describe(self) -> str:
        cfg, t = self.base_config, self.tune
        r = t.resources
        lines = [self.data_warning] if self.data_warning else []
        lines += [
            f"study {self.name} ({self.path}) -> {t.storage_path.rstrip('/')}/{self.name}",
            f"base: {cfg.data.name}, method {cfg.method.name} on {cfg.model.name}, {cfg.schedule.epochs} epochs, noise {cfg.noise.mode}",
            f"search ({len(self.dimensions)} dimensions):",
        ]
        width = max((len(d.key) for d in self.dimensions), default=0)
        lines += [f"  {d.key:<{width}}  {d.describe()}" for d in self.dimensions] or ["  (none: every trial runs the base config)"]
        arms = f" + {len(t.baselines)} baseline arm{'s' if len(t.baselines) != 1 else ''}" if t.baselines else ""
        lines.append(
            f"trials: {self.num_trials} (num_samples {t.num_samples} x {self.grid_size} grid "
            f"combination{'s' if self.grid_size != 1 else ''}{arms}); "
            f"at most {t.max_concurrent_trials} at once"
        )
        if t.baselines:
            lines.append(f"baseline arms: {', '.join(t.baselines)}, each once on the base config, first; ASHA never stops them")
        s = t.scheduler
        if s.name == "asha":
            lines.append(
                f"scheduler: ASHA on epoch, max_t {self.max_t}, grace_period {s.grace_period}, reduction_factor "
                f"{s.reduction_factor:g}, brackets {s.brackets}; metric {t.metric} ({t.mode})"
            )
            rungs = ", ".join(map(str, asha_rungs(s.grace_period, s.reduction_factor, self.max_t)))
            warmup = longest_warmup(self.base, cfg, self.dimensions)
            acting = keys_acting_in_warmup(cfg, self.dimensions)
            after = (
                f"the longest warm-up ends at epoch {warmup}"
                + (f"; {', '.join(acting)} act{'s' if len(acting) == 1 else ''} during it" if acting and s.grace_period <= warmup else "")
                if warmup
                else "the warm-up ends at the onset, found while training; a shared warm-up's first cut waits for it"
                if at_onset(cfg)
                else f"{cfg.method.name} has no warm-up"
            )
            lines.append(f"ASHA compares trials at epochs {rungs} ({after})")
        else:
            lines.append(f"scheduler: FIFO (every trial runs {self.max_t} epochs); metric {t.metric} ({t.mode})")
        a = t.search_alg
        if a.name == "hyperopt":
            n = len(a.points_to_evaluate or [])
            lines.append(
                f"search algorithm: HyperOpt, {n} point{'s' if n != 1 else ''} to evaluate first, then {a.n_initial_points} "
                "random points before it models the space"
            )
        else:
            lines.append("search algorithm: random sampling")
        res = self.trial_resources()
        how = (
            "in-process (workers: 0, no Ray Train)"
            if r.workers == 0
            else f"Ray Train, {r.workers} worker{'s' if r.workers > 1 else ''} x ({r.cpus_per_worker:g} CPU, {r.gpu_per_worker:g} GPU)"
        )
        share = self.trials_per_gpu()
        gpu_text = "no GPU" if share is None else (f"{share} trials share one GPU" if share > 1 else "whole GPUs")
        lines.append(f"resources per trial: {how}: {res['CPU']:g} CPU, {res['GPU']:g} GPU; {gpu_text}")
        lines.append(f"failures: each trial retried up to {t.max_failures} time{'s' if t.max_failures != 1 else ''}")
        lines.append(self.warmup_plan.describe() if self.warmup_plan is not None else self.warmup_note)
        if t.callbacks:
            lines.append(f"experiment trackers: {', '.join(t.callbacks)} (each reads where to write from its environment: docs/usage.md)")
        lines += self.method_notes
        return "\n".join(lines)


def _method_search_notes(base_cfg: RunConfig, dims: list[Dimension]) -> list[str]:
    """Each method's own search-space rules (its registry entry's check_search): a refused space raises, an
    accepted one may give lines for the plan."""
    names = [base_cfg.method.name] + [v for d in dims if d.key == "method.name" for v in d.params["values"]]
    notes = []
    for name in dict.fromkeys(names):
        check = METHODS.get(name).check_search
        if check is not None:
            lines = call_entry(f"method {name}: check_search", check, dims, base_cfg)
            notes += [line for line in lines if line not in notes]
    return notes


def _check_parallel_methods(t: TuneSection, base_cfg: RunConfig, dims: list[Dimension]) -> None:
    """A method that mixes images across the whole batch (DISC's mixup) needs the batch on one worker."""
    if t.resources.workers <= 1:
        return
    names = {base_cfg.method.name}
    for d in dims:
        if d.key == "method.name":
            names = set(d.params["values"])
    for name in sorted(names):
        spec = METHODS.get(name)
        key = spec.whole_batch_key
        if key is None:
            continue
        searched = any(d.key == f"method.{key}" for d in dims)
        if getattr(base_cfg.method, key) > 0 or searched:
            raise UserError(
                f"method.{key}: {spec.whole_batch_use or name} needs the whole batch on one worker; "
                f"with tune.resources.workers {t.resources.workers} set it to 0 (and do not search it) or use one worker"
            )


def _check_point_values(points: list[dict], dims: list[Dimension], base: dict, complete: bool = False) -> None:
    """Each starting point lies inside its dimensions and makes a valid run config; with `complete`
    (HyperOpt, which otherwise fails once Ray runs) it gives every search key."""
    by_key = {d.key: d for d in dims}
    for i, point in enumerate(points):
        where = f"tune.search_alg.points_to_evaluate[{i}]"
        for key, value in point.items():
            d = by_key[key]
            if not d.inside(value):
                raise UserError(f"{where}.{key}: {show_value(value)} lies outside its search dimension {d.describe()}")
        missing = [d.key for d in dims if d.key not in point]
        if complete and missing:
            shown = missing[0].split("[")[0]
            raise UserError(
                f"{where}: no value for {shown}; HyperOpt needs every search key in a starting point (it fails once trials start)"
            )
        try:
            from_dict(RunConfig, apply_point(base, point))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None


def _check_forget_rate_extremes(base_cfg: RunConfig, dims: list[Dimension]) -> None:
    """The largest searched alpha with the largest searched noise rate must still leave entries to train on."""
    m = base_cfg.method
    names = {m.name} | {v for d in dims if d.key == "method.name" for v in d.params["values"]}
    if not any(METHODS.get(name).forgets for name in names):
        return
    relevant = [d for d in dims if d.key in ("method.alpha", "method.noise_rate") or d.key.startswith("method.noise_rates[")]
    top = {d.key: d.bounds()[1] for d in relevant}
    rates = [v for k, v in top.items() if k.startswith("method.noise_rates[")]
    if not rates and m.noise_rate_source != "given" and "method.noise_rate" not in top:
        return
    alpha = top.get("method.alpha", m.alpha)
    try:
        per_class = any(METHODS.get(name).class_rates and METHODS.get(name).class_rates(base_cfg) for name in names)
        check_forget_rates(
            alpha, rates or m.noise_rates or [], top.get("method.noise_rate", m.noise_rate), granularity=m.granularity, per_class=per_class
        )
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


# Paths a trial opens: Tune runs each trial in its own folder (and Ray Train its workers elsewhere),
# so a path relative to where mhss-tune was started is made absolute before the trials get it.
LOCAL_PATH_KEYS = (("data", "root"), ("model", "pretrained_path"), ("noise", "clean_subset"))


def _check_model_names(cfg: RunConfig, dims: list) -> None:
    """Unknown timm names are found here, not in every trial after the cluster has started."""
    import timm

    names = [("model.name", cfg.model.name)]
    names += [
        (f"search.model.name.values[{i}]", v) for d in dims if d.key == "model.name" for i, v in enumerate(d.params.get("values", []))
    ]
    for where, name in names:
        if not timm.is_model(name):
            raise UserError(f"{where}: unknown timm model {name!r}")


def _absolute_paths(base: dict, cfg: RunConfig) -> dict:
    base = copy.deepcopy(base)
    for section, key in LOCAL_PATH_KEYS:
        value = getattr(getattr(cfg, section), key)  # ${VAR} already expanded
        if value is not None:
            base.setdefault(section, {})[key] = str(Path(value).expanduser().absolute())
    if cfg.noise.verified:  # review sheets: every trial and arm trains on the same verified labels
        base.setdefault("noise", {})["verified"] = [str(Path(f).expanduser().absolute()) for f in cfg.noise.verified]
    return base


def load_space(path: str | Path, overrides: list[str] | None = None, plan_only: bool = False) -> StudySpec:
    """Read and validate a search-space file; `--set` overrides apply to the base config and tune.*.
    `plan_only` (--dry-run): an absent paper dataset is a warning, its published classes stand in."""
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
        check_tune(tune_section, base_cfg)
        names, data_warning = planned_class_names(base_cfg) if plan_only else (class_names(base_cfg), "")
        dims = _dimensions(rest, base_cfg, search, names)
        if tune_section.search_alg.name == "hyperopt":
            for d in dims:
                if d.kind.grid:
                    raise UserError(
                        f"search.{d.key}.dist: grid is not supported with tune.search_alg.name hyperopt (use choice, or search_alg random)"
                    )
        _check_parallel_methods(tune_section, base_cfg, dims)
        method_notes = _method_search_notes(base_cfg, dims)
        _check_model_names(base_cfg, dims)
        _check_points(tune_section.search_alg.points_to_evaluate, dims, len(names))
        tune_section.search_alg.points_to_evaluate = _expand_points(tune_section.search_alg.points_to_evaluate, len(names)) or None
        _check_point_values(
            tune_section.search_alg.points_to_evaluate or [], dims, rest, complete=tune_section.search_alg.name == "hyperopt"
        )
        _check_forget_rate_extremes(base_cfg, dims)
        if tune_section.scheduler.name == "asha":
            s = tune_section.scheduler
            max_t = s.max_t or base_cfg.schedule.epochs
            warmup = longest_warmup(rest, base_cfg, dims)
            check_rungs(s.grace_period, s.reduction_factor, max_t, warmup, keys_acting_in_warmup(base_cfg, dims), base_cfg.method.name)
        arm_bases = _arm_bases(unsearched, tune_section, dims)
        tune_section.storage_path = _absolute_storage(tune_section.storage_path)
        for config in (rest, *arm_bases.values()):
            _resolve_cache_dir(config, base_cfg, tune_section.storage_path)
        base_cfg = from_dict(RunConfig, rest)
    except UserError as exc:
        raise blame(exc, path, overrides) from None
    name = tune_section.name or check_name(path.stem, "the space file's name (give tune.name or --name)")
    grid = math.prod(len(d.params["values"]) for d in dims if d.kind.grid)
    plan, note = plan_warmup(tune_section.share_warmup, rest, base_cfg, dims, tune_section.num_samples * grid)
    return StudySpec(path, rest, base_cfg, dims, tune_section, name, names, arm_bases, plan, note, data_warning, method_notes)


def _arm_bases(unsearched: dict, t: TuneSection, dims: list[Dimension]) -> dict:
    """Each baseline arm's run config: the base as written (a searched key keeps the base's value,
    or the default) with the arm's method; checked here, not when its trial starts."""
    if t.baselines and any(d.kind.grid for d in dims):
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


def _resolve_cache_dir(config: dict, cfg: RunConfig, storage: str) -> None:
    """`data.cache_dir: auto` -> decode_cache/ beside the storage folder, resolved once here (as the storage)."""
    from ..data.decode_cache import AUTO, OFF, default_cache_dir

    given = cfg.data.cache_dir
    if given == AUTO:
        given = default_cache_dir(storage, cfg.data.root)
    elif given != OFF:
        given = str(Path(given).expanduser().absolute())
    config.setdefault("data", {})["cache_dir"] = given


def _absolute_storage(storage: str) -> str:
    """Resolved once, here in the driver: a trial resolving a relative path would resolve it inside
    its own working folder (Tune's trial folder, Ray's session folder) and write its checkpoints there."""
    if "://" in storage:
        return storage
    check_writable(storage, "tune.storage_path")
    return str(Path(storage).expanduser().absolute())
