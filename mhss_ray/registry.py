"""Registries of methods and datasets, the timm way: each method or dataset is one module that
registers itself, with what the rest of the code needs to know about it (its capabilities).

    @register_method("coteaching", num_networks=2, forgets=True, keys=("alpha", "t_k", "granularity"))
    def build(inputs: MethodInputs) -> Method: ...

Name lists (`method.name`, `data.name`, `tune.baselines`), the checks that depend on a method or a
dataset (warm-up, restarts, forget rates, whole-batch mixup, Sewer-ML's weighted metrics) and the
analysis labels are all read from here. This module is the bottom layer: it imports nothing of the
package at import time. The built-in entries register when their packages are first imported; a lookup
imports them (and the `mhss_ray.plugins` entry points of installed packages) if nothing has yet, so a
name check never depends on import order.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from .errors import UserError
from .yaml_files import show_value

PLUGIN_GROUP = "mhss_ray.plugins"  # entry points of installed packages that register methods or datasets
# modules to import as plugins, comma-separated (a plugin file not installed as a package; a study's trials
# inherit the variable, so they register it too)
PLUGIN_ENV = "MHSS_PLUGINS"
BUILTIN_PACKAGES = ("mhss_ray.methods", "mhss_ray.data")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[Any], Any]  # (MethodInputs) -> Method
    num_networks: int = 1
    num_views: int = 1  # DISC: a weak and a strong view of each image
    forgets: bool = False  # forget rate tau = alpha * eps (METHODS.md section 2): needs noise rates
    estimates_rates: bool = False  # can estimate them from its own networks (noise_rate_source: estimated)
    # (RunConfig) -> True where its forget rates are per class (MHSS's CDNR); None: one rate for every class, the
    # global eps (or, per polarity, the classes' mean of each): the rates the run checks judge
    class_rates: Callable[[Any], bool] | None = None
    warmup: bool = False  # reads method.warmup (epochs on every entry before it selects)
    # (RunConfig) -> the epochs its warm-up lasts, where every entry trains alike whatever its own knobs
    warmup_epochs: Callable[[Any], int] | None = None
    warmup_reads: tuple[str, ...] = ()  # the method.* keys that change training during the warm-up (the rest act after it)
    # the method.* keys that change neither training nor the method's state before the warm-up ends: trials that
    # differ only in these share their warm-up (tune.share_warmup); method.warmup among them: where each forks
    after_warmup_keys: tuple[str, ...] = ()
    histories: bool = False  # prediction histories of length method.q; its corrected labels survive method.restarts
    # (search dimensions, base RunConfig) -> lines for the plan; raises UserError for a space it refuses (its own rules)
    check_search: Callable[[list, Any], list] | None = None
    needs_clean: bool = False  # trains on the clean labels (synthetic noise only)
    whole_batch_key: str | None = None  # method.<key> > 0 makes it mix images across the whole batch (one worker only)
    whole_batch_use: str = ""  # what mixes them, for the error line ("DISC's mixup")
    keys: tuple[str, ...] = ()  # the method.* keys it reads: its config section, shown in reports
    labels: dict = field(default_factory=dict)  # {method.<key>: short label} for plot legends
    summary: str = ""
    # a dataclass of the plugin's own keys, read as method.<key> (validated, searched and saved like the built-in
    # ones; config.num gives a field its range); the run's values are cfg.method.<key> or cfg.method.params
    params: type | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    build: Callable[[Any], Any]  # (RunConfig) -> DataBundle
    class_names: Callable[[Any], list]  # (RunConfig) -> class names, reading no more than the label file
    keys: tuple[str, ...] = ()  # the data.* keys it reads beyond the common ones: its config section
    reads_files: bool = False  # its images are files under data.root (the decode cache applies)
    weighted_metrics: bool = False  # ships official class weights: F2-CIW and F1-Normal are metrics of every run
    summary: str = ""
    params: type | None = None  # a dataclass of the plugin's own keys, read as data.<key> (as MethodSpec.params)
    published_classes: tuple[str, ...] = ()  # the classes a published dataset always has: a plan lists them before its data is there


S = TypeVar("S")


class Registry(Generic[S]):
    """name -> spec, in registration order (the order error messages list them in)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key  # key: the config key that names an entry (method.name)
        self._entries: dict[str, S] = {}

    def add(self, spec: S) -> S:
        name = spec.name
        if not isinstance(name, str) or not name:
            raise UserError(f"a {self.kind} registered without a name (got {name!r})")
        if name in self._entries and self._entries[name] is not spec:
            raise UserError(f"{self.kind} {name!r} is registered twice (a built-in or another plugin has that name); give it another")
        self._entries[name] = spec
        return spec

    def remove(self, name: str) -> None:
        """Unregister (tests that register a toy entry clean up after themselves)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str, where: str | None = None) -> S:
        """The spec of `name`, or a UserError in the config validation's words, naming `where` (the key)."""
        if name not in self.names():
            raise UserError(f"{where or self.key}: expected one of {', '.join(self.names())}, got {show_value(name)}")
        return self._entries[name]

    def specs(self) -> list[S]:
        return [self._entries[n] for n in self.names()]


METHODS: Registry[MethodSpec] = Registry("method", "method.name")
DATASETS: Registry[DatasetSpec] = Registry("dataset", "data.name")
_loaded = False


def load_plugins() -> None:
    """Import the built-in packages (their modules register on import) and the installed plugins, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in BUILTIN_PACKAGES:
        importlib.import_module(package)
    for entry in entry_points(group=PLUGIN_GROUP):
        _import_plugin(f"the {PLUGIN_GROUP} entry point {entry.name} ({entry.value})", entry.load)
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        if module.endswith(".py") or "/" in module or os.sep in module:
            raise UserError(
                f"{PLUGIN_ENV}: {module} is a file; give its module name ({os.path.splitext(os.path.basename(module))[0]}) "
                "and put its folder on PYTHONPATH"
            )
        _import_plugin(f"{PLUGIN_ENV}: {module}", lambda m=module: importlib.import_module(m), module)


def _import_plugin(what: str, load: Callable, module: str | None = None) -> None:
    """A plugin that fails to import, raises while it registers, or takes a registered name: one line naming it
    (and its file) and what it did, never a traceback from inside a trial."""
    try:
        load()
    except UserError as exc:
        raise UserError(f"{what}{_origin(module)}: {exc}") from None
    except ImportError as exc:
        raise UserError(f"{what}: cannot import it ({exc})") from None
    except SyntaxError as exc:
        raise UserError(f"{what}: cannot import it: {exc.msg} ({exc.filename}, line {exc.lineno})") from None
    except Exception as exc:  # noqa: BLE001 - whatever the plugin's own code raises
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"{what}{_origin(module)}: raised {type(exc).__name__} while importing{': ' + detail if detail else ''}") from None


def _origin(module: str | None) -> str:
    if not module:
        return ""
    import sys

    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        try:
            found = importlib.util.find_spec(module)
            file = found.origin if found else None
        except (ImportError, ValueError):
            file = None
    return f" ({file})" if file else ""


def register_method(name: str, **capabilities) -> Callable:
    """Decorator for a method's builder: `build(inputs: MethodInputs) -> Method`."""

    def wrap(build: Callable) -> Callable:
        METHODS.add(MethodSpec(name, build, **capabilities))
        return build

    return wrap


def register_dataset(name: str, build: Callable, class_names: Callable, **capabilities) -> DatasetSpec:
    return DATASETS.add(DatasetSpec(name, build, class_names, **capabilities))


def call_entry(what: str, fn: Callable, *args):
    """Call a registered entry's own code (a plugin's check_search, suspected, ...): a UserError passes as it is,
    anything else it raises becomes one line naming it, its file and what it raised, never a traceback."""
    try:
        return fn(*args)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the plugin's own code raises
        import inspect

        try:
            where = f" ({inspect.getsourcefile(fn)})"
        except TypeError:
            where = ""
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"{what}{where} raised {type(exc).__name__}{': ' + detail if detail else ''}") from None


def own_keys(spec) -> tuple[str, ...]:
    """The keys a method or dataset reads: the shared ones it names, then its own (its params dataclass)."""
    import dataclasses

    own = tuple(f.name for f in dataclasses.fields(spec.params)) if spec.params is not None else ()
    return tuple(spec.keys) + tuple(k for k in own if k not in spec.keys)


def describe() -> str:
    """The registered methods and datasets with what they are (`mhss-train --list`)."""
    lines = ["methods (method.name):"]
    width = max(len(n) for n in (*METHODS.names(), *DATASETS.names()))
    for m in METHODS.specs():
        nets = f"{m.num_networks} network{'s' if m.num_networks > 1 else ''}" + (f", {m.num_views} views" if m.num_views > 1 else "")
        lines.append(f"  {m.name:<{width}}  {nets}; {m.summary}")
        if own_keys(m):
            lines.append(f"  {'':<{width}}  keys: {', '.join('method.' + k for k in own_keys(m))}")
    lines.append("datasets (data.name):")
    for d in DATASETS.specs():
        lines.append(f"  {d.name:<{width}}  {d.summary}")
        if own_keys(d):
            lines.append(f"  {'':<{width}}  keys: {', '.join('data.' + k for k in own_keys(d))}")
    return "\n".join(lines)


__all__ = [
    "DATASETS", "METHODS", "DatasetSpec", "MethodSpec", "Registry", "describe", "load_plugins", "own_keys", "register_dataset",
    "register_method",
]  # fmt: skip
