"""The run config: one typed description of a training run, loaded from YAML and validated.

Every section is a dataclass; `from_dict` walks the YAML mapping against the dataclass fields and
rejects unknown keys, wrong types and out-of-range values with the YAML key path in the message
(`method.alpha: expected a number in [0, 2], got 'abc'`). The same code serves `mhss-train`,
`mhss-tune` (whose space files are a run config plus `search:` and `tune:` blocks) and the tests.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints


from .errors import UserError
from .registry import DATASETS, METHODS
from .rounds import RoundSchedule
from .yaml_files import parse_yaml, read_yaml, show_value  # noqa: F401  (read_yaml, show_value: re-exported)

# Top-level blocks of a search-space file that belong to mhss-tune, not to the run config.
STUDY_BLOCKS = ("search", "tune")


def num(default: Any, lo: float | None = None, hi: float | None = None):
    """A numeric field with an inclusive range, checked on load."""
    return field(default=default, metadata={"range": (lo, hi)})


@dataclass
class DataConfig:
    name: str = field(default="digits-mosaic", metadata={"registry": DATASETS})  # a registered dataset (mhss_ray/data/)
    root: Optional[str] = None  # dataset folder (not used by digits-mosaic); ${VAR} / ${VAR:-default} expand
    image_size: int = num(32, 8, 4096)  # side of the network input, pixels
    batch_size: int = num(64, 1, 65536)
    num_workers: int = num(0, 0, 256)  # DataLoader worker processes (they decode the image files)
    # image files decoded once into this folder and read from there by every run and trial (data/decode_cache.py);
    # auto: beside the run's --out / the study's storage folder (decode_cache/); off: decode every epoch
    cache_dir: str = field(default="auto", metadata={"off_word": True})
    # digits-mosaic
    grid: int = num(2, 1, 8)  # g: mosaics are g x g tiles of 8x8 digits
    n_train: int = num(4000, 1, 10_000_000)
    n_val: int = num(500, 1, 10_000_000)
    n_test: int = num(1000, 1, 10_000_000)
    base_split: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # of the 1,797 digits
    blank_prob: float = num(0.25, 0.0, 0.95)  # chance that a tile is empty
    zipf_exponent: float = num(1.0, 0.0, 5.0)  # class prior p_c ~ 1 / (c + 1)^s
    # image-file datasets (ucmerced, treesat, sewerml, manifest)
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])  # train/val/test where the dataset has no split
    val_fraction: float = num(0.1, 0.0, 0.9)  # of the training rows, where the dataset has train/test only
    split_seed: int = num(0, 0, 2**31 - 1)  # splits stay fixed while a study varies the run seed
    randaugment: str = "rand-m9-mstd0.5"  # timm RandAugment spec for training images; "none" = off
    mean: Optional[list[float]] = None  # per channel, 0..1 scale; default: the dataset's own
    std: Optional[list[float]] = None
    on_bad_image: Literal["error", "skip"] = "error"  # an image that cannot be decoded during training
    follow_links: bool = False  # read images through links that lead outside the dataset folder (off: refused, like ../ paths)
    class_weights: Optional[dict] = None  # {class: weight} for F2-CIW; sewerml: the official weights
    # treesat
    label_threshold: float = num(0.07, 0.0, 1.0)  # a genus counts when its area share is >= this
    bands: list[str] = field(default_factory=lambda: ["R", "G", "B"])  # of IR, G, B, R; 4 bands = 4 input channels
    # manifest
    manifest: Optional[str] = None  # file under root; default manifest.csv or manifest.parquet
    file_column: str = "file"
    labels_column: Optional[str] = None  # one column of ';'-separated class names instead of 0/1 columns
    split_column: str = "split"  # optional column of train/val/test
    classes: Optional[list[str]] = None  # class columns / names in order; default: every other column
    # the dataset plugin's own keys (its registry entry's params dataclass), read and written as data.<key>
    params: Any = field(default=None, metadata={"plugin_params": True})

    def __getattr__(self, key: str):
        return _plugin_value(self, key)


@dataclass
class NoiseConfig:
    """Synthetic label noise, METHODS.md section 9."""

    mode: Literal["none", "naive", "complex", "real"] = "none"  # real: the labels as given (Sewer-ML)
    rate: float = num(0.2, 0.0, 1.0)  # epsilon: naive's rate, complex's mean class rate
    seed: Optional[int] = None  # defaults to the run seed
    # complex only
    rates: Optional[dict] = None  # {class name: epsilon_c}; classes not named draw around `rate`
    spread: float = num(0.5, 0.0, 1.0)  # drawn epsilon_c ~ U(rate * (1 - spread), rate * (1 + spread))
    omission_share: float = num(0.7, 0.0, 1.0)  # share of a class's errors that are omissions
    confusions: Optional[list] = None  # [[a, b, rate], ...]: a true a reported as b; null = the dataset's default
    sloppy_fraction: float = num(0.2, 0.0, 1.0)  # share of images written by careless reporters
    sloppy_weight: float = num(5.0, 1.0, 100.0)  # how much likelier an error lands on a sloppy image
    # real only: a label file in the dataset's own format holding verified labels of some training images
    clean_subset: Optional[str] = None
    # review sheets people filled in (mhss-audit --review): their entries train with the verified label
    verified: Optional[list] = None


@dataclass
class ModelConfig:
    name: str = "resnet18"  # any timm model name
    pretrained_path: Optional[str] = None  # local checkpoint file (no hub download)
    drop_rate: float = num(0.0, 0.0, 1.0)
    ema: bool = False
    ema_decay: float = num(0.999, 0.0, 1.0)


@dataclass
class LossConfig:
    """Asymmetric Loss, METHODS.md section 1."""

    gamma_neg: float = num(4.0, 0.0, 10.0)
    gamma_pos: float = num(0.0, 0.0, 10.0)
    clip: float = num(0.05, 0.0, 1.0)


@dataclass
class MethodConfig:
    """The noisy-label method and its hyperparameters (METHODS.md sections 2-8)."""

    name: str = field(default="asl", metadata={"registry": METHODS})  # a registered method (mhss_ray/methods/)
    # forget rate, section 2: tau_c(e) = alpha * eps_c * min(1, e / t_k)
    alpha: float = num(1.0, 0.0, 2.0)
    t_k: int = num(10, 0, 100_000)
    # oracle: the realised rates of synthetic noise; given: noise_rates / noise_rate; estimated: from the
    # networks' predictions on the training labels (noise_rate_estimator), refreshed after every epoch until
    # the method selects (the warm-up; Co-teaching: the t_k ramp), or after every epoch (noise_rate_refresh)
    noise_rate_source: Literal["oracle", "given", "estimated", "verified"] = "oracle"  # verified: noise.verified's random sample
    noise_rate_estimator: Literal["likelihood", "confident", "mixture"] = "likelihood"
    noise_rate_refresh: Literal["warmup", "every_epoch"] = "warmup"
    # while it estimates, each of the two networks leaves out its own share of the training images, so that the
    # estimate reads predictions on images that network did not learn (0: in-sample, which memorisation biases low)
    noise_rate_holdout: float = num(0.2, 0.0, 0.5)
    # when Co-teaching, CoSELFIE and MHSS start to select (docs/methods.md, "The onset"). clock: the paper's fixed
    # epochs (method.warmup, else max(q + ceil(E/10), ceil(E/3)); Co-teaching ramps in from its first epoch over
    # t_k). plateau: once the mAP the second network reaches on the images it holds out (noise_rate_holdout; the
    # first learns them all), against their observed labels, has not risen for onset_patience epochs; then at full rate
    onset: Literal["clock", "plateau"] = "clock"
    onset_patience: int = num(2, 1, 1000)
    noise_rates: Optional[list[float]] = None  # given eps_c, one per class
    noise_rate: Optional[float] = num(None, 0.0, 1.0)  # given global eps; default: mean of the eps_c
    # revision 2: per_class_polarity forgets tau_c+ = alpha * eps_c+ of the observed positives and tau_c- of
    # the observed negatives (split), or tau_c of each (column, revision 1); `given` splits eps_c by omission_share
    polarity_rates: Literal["column", "split"] = "column"
    omission_share: float = num(0.5, 0.0, 1.0)  # omega: share of a class's wrong entries that are wrong observed negatives
    # section 3; the default is what benchmarks/results/methods_gpu.md measured best (see benchmarks/README.md)
    granularity: Literal["per_class", "per_class_polarity", "global"] = "per_class_polarity"
    # CoSELFIE / MHSS, sections 5-6
    q: int = num(5, 1, 16)  # history length (up to 8: 1 byte per entry, up to 16: 2 bytes)
    # revision 2: the predicted label recorded in the history. loss: 1 where label 1 has the smaller
    # loss (p > p*, 0.5 for BCE, ~0.75 for ASL's defaults); rank: the top pi_c * B logits of column c
    # (pi_c the observed positive share); a number: p above it
    history_threshold: Union[Literal["loss", "rank"], float] = field(default="loss", metadata={"range": (0.0, 1.0)})
    theta: float = num(0.05, 0.0, 1.0)  # entropy threshold
    warmup: Optional[int] = num(None, 0, 100_000)  # default: max(q + ceil(E/10), ceil(E/3)) (CoSELFIE, MHSS), 10 (DISC); >= q
    correction_budget: bool = False  # revision 2: at most ceil(alpha * eps_c * N) corrected labels per class
    # revision 2, SELFIE's restart: the epochs run as restarts + 1 rounds; each later round re-initialises the
    # networks and the optimiser, clears the histories and keeps the corrected labels (warm-up per round)
    restarts: int = num(0, 0, 8)
    cdnr: bool = True  # MHSS: class-dependent forget rates
    jcc: bool = True  # MHSS: joint correction criterion
    # revision 3: agree, an entry is corrected where both networks deem it refurbishable with one majority
    # label; either, where one does (revision 2: 43-46% of its corrections right under augmentation)
    jcc_rule: Literal["agree", "either"] = "agree"
    # DISC, section 7
    disc_lambda: float = num(0.99, 0.0, 1.0)
    disc_sigma: float = num(0.5, 0.0, 1.0)
    gce_q: float = num(0.7, 0.01, 1.0)
    mixup_alpha: float = num(5.0, 0.0, 100.0)
    disc_shift: bool = True  # revision 2: confidences from sigmoid(z - logit p*) (no change for BCE)
    # the method plugin's own keys (its registry entry's params dataclass), read and written as method.<key>
    params: Any = field(default=None, metadata={"plugin_params": True})

    def __getattr__(self, key: str):
        return _plugin_value(self, key)


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = num(1e-3, 1e-8, 10.0)
    weight_decay: float = num(1e-4, 0.0, 1.0)
    scheduler: Literal["onecycle", "cosine", "constant"] = "onecycle"
    pct_start: float = num(0.2, 0.0, 1.0)  # OneCycle warm-up share (ASL's recipe)


@dataclass
class ScheduleConfig:
    epochs: int = num(20, 1, 100_000)


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "on", "off"] = "auto"  # bf16 autocast; auto = on with a GPU
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto = on (faster on GPUs and on CPU convs)
    threads: Optional[int] = num(None, 1, 1024)  # torch intra-op threads; None = torch's default
    compile: Literal["on", "off"] = "off"  # torch.compile the networks' training step (benchmarks/train_speed.py --levers)
    fused_optimizer: Literal["auto", "on", "off"] = "auto"  # torch's fused Adam/AdamW/SGD kernel; auto = on with a GPU
    progress_every_s: float = num(60.0, 0.0, 86_400.0)  # a progress line within a long epoch at most this often; 0: none


@dataclass
class RunConfig:
    seed: int = num(0, 0, 2**31 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        """The YAML mapping of this config: a plugin's own keys sit in its section beside the shared ones."""
        data = dataclasses.asdict(self)
        for section in PLUGIN_SECTIONS.values():
            data[section].update(data[section].pop("params") or {})
        return data


# ----------------------------------------------------------------------------- plugins' own keys

PLUGIN_SECTIONS = {MethodConfig: "method", DataConfig: "data"}  # sections whose registered entry may own keys
_REGISTRIES = {MethodConfig: METHODS, DataConfig: DATASETS}


def _plugin_value(section: Any, key: str):
    """cfg.method.<key> for a key of the method's own params (dataclass __getattr__: only for unknown names)."""
    params = section.__dict__.get("params")
    if params is not None and not key.startswith("__") and key in {f.name for f in dataclasses.fields(params)}:
        return getattr(params, key)
    raise AttributeError(f"{type(section).__name__} has no key {key!r}")


def plugin_params(cls: type, name: Any) -> type | None:
    """The params dataclass of the entry `name` of section `cls` (MethodConfig, DataConfig), if it has one."""
    registry = _REGISTRIES.get(cls)
    if registry is None or not isinstance(name, str) or name not in registry.names():
        return None
    params = registry.get(name).params
    if params is not None:
        shared = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(params)}
        if shared:  # a programming error of the plugin
            raise ValueError(f"{registry.kind} {name}: its params repeat the shared keys {sorted(shared)}")
    return params


def section_fields(cls: type, name: Any = None) -> dict[str, tuple[dataclasses.Field, type]]:
    """The keys of a config section: {key: (field, the dataclass that declares it)}, with the own keys of the
    plugin `name` names (default: the section's default entry)."""
    out = {f.name: (f, cls) for f in dataclasses.fields(cls) if not f.metadata.get("plugin_params")}
    if cls in _REGISTRIES:
        params = plugin_params(cls, name if name is not None else cls.name)
        out.update({f.name: (f, params) for f in dataclasses.fields(params)} if params is not None else {})
    return out


# ----------------------------------------------------------------------------- validation


def _fmt(x: float) -> str:
    return f"{x:g}"


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{_fmt(lo)}, {_fmt(hi)}]"
    if lo is not None:
        return f" >= {_fmt(lo)}"
    if hi is not None:
        return f" <= {_fmt(hi)}"
    return ""


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_optional(tp) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _number(value: Any, kind: type, meta: dict, path: str):
    lo, hi = meta.get("range", (None, None))
    noun = "an integer" if kind is int else "a number"
    expected = f"{path}: expected {noun}{_range_text(lo, hi)}, got {show_value(value)}"
    if isinstance(value, bool):
        raise UserError(expected)
    if isinstance(value, str) and kind is float:
        # PyYAML reads 1e-3 (no dot) as a string; accept what float() reads.
        try:
            value = float(value)
        except ValueError:
            raise UserError(expected) from None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise UserError(expected)
    else:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(expected)
        value = float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(expected)
    return value


def _coerce(value: Any, tp: Any, meta: dict, path: str) -> Any:
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        if dataclasses.is_dataclass(tp):
            raise UserError(f"{path}: expected a mapping, got null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:  # e.g. a named choice or a number: the first arm that takes it
        arms = get_args(tp)
        for arm in arms:
            try:
                return _coerce(value, arm, meta, path)
            except UserError:
                continue
        words = [str(c) for a in arms if get_origin(a) is Literal for c in get_args(a)]
        lo, hi = meta.get("range", (None, None))
        raise UserError(f"{path}: expected {', '.join(words)} or a number{_range_text(lo, hi)}, got {show_value(value)}")
    if "registry" in meta:  # a name of a registered method or dataset
        meta["registry"].get(value, path)
        return value
    if isinstance(value, bool) and (origin is Literal and {"on", "off"} & set(get_args(tp)) or (meta.get("off_word") and not value)):
        value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise UserError(f"{path}: expected one of {', '.join(map(str, choices))}, got {show_value(value)}")
        return value
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{path}: expected a list, got {show_value(value)}")
        return [_coerce(v, item_tp, meta, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{path}: expected true or false, got {show_value(value)}")
        return value
    if tp in (list, dict):
        if not isinstance(value, tp):
            raise UserError(f"{path}: expected a {'list' if tp is list else 'mapping'}, got {show_value(value)}")
        return value
    if tp in (int, float):
        return _number(value, tp, meta, path)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise UserError(f"{path}: expected a non-empty string, got {show_value(value)}")
        return value
    raise TypeError(f"config field {path} has an unsupported type {tp!r}")  # a bug, not a user error


def from_dict(cls: type, data: Any, path: str = ""):
    """Build dataclass `cls` from a YAML mapping, naming the key path of the first bad value."""
    if not isinstance(data, dict):
        raise UserError(f"{path or 'config'}: expected a mapping, got {show_value(data)}")
    name = None
    if cls in _REGISTRIES:  # the entry's name first: it says which own keys the section may hold
        name = _coerce(data["name"], str, cls.__dataclass_fields__["name"].metadata, _join(path, "name")) if "name" in data else cls.name
    known = section_fields(cls, name)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
            raise UserError(f"{_join(path, key)}: unknown key ({hint})")
    hints = get_type_hints(cls)
    own = {k: data[k] for k, (_, owner) in known.items() if owner is not cls and k in data}
    kwargs = {k: _coerce(data[k], hints[k], f.metadata, _join(path, k)) for k, (f, owner) in known.items() if owner is cls and k in data}
    obj = cls(**kwargs)
    params = plugin_params(cls, name) if cls in _REGISTRIES else None
    if params is not None:
        obj.params = from_dict(params, own, path)
    _check_consistency(obj, path)
    return obj


def _check_consistency(obj: Any, path: str) -> None:
    """Rules that span several keys of one section (per-class lengths are checked against the data)."""
    if isinstance(obj, NoiseConfig):
        for name, rate in (obj.rates or {}).items():
            _number(rate, float, {"range": (0.0, 1.0)}, _join(path, f"rates.{name}"))
        for i, item in enumerate(obj.confusions or []):
            where = _join(path, f"confusions[{i}]")
            if not isinstance(item, list) or len(item) != 3:
                raise UserError(f"{where}: expected [true class, reported class, rate], got {show_value(item)}")
            _number(item[2], float, {"range": (0.0, 1.0)}, where + "[2]")
    if isinstance(obj, MethodConfig):
        for i, rate in enumerate(obj.noise_rates or []):
            _number(rate, float, {"range": (0.0, 1.0)}, _join(path, f"noise_rates[{i}]"))
        if obj.noise_rate_source == "given" and obj.noise_rates is None and obj.noise_rate is None:
            raise UserError(f"{_join(path, 'noise_rates')}: required when noise_rate_source is given")
    if isinstance(obj, DataConfig):
        split = obj.base_split
        if len(split) != 3 or any(s <= 0 for s in split) or abs(sum(split) - 1) > 1e-6:
            raise UserError(f"{_join(path, 'base_split')}: expected three positive fractions that sum to 1, got {show_value(split)}")
        split = obj.split
        if len(split) != 3 or split[0] <= 0 or any(s < 0 for s in split) or abs(sum(split) - 1) > 1e-6:
            raise UserError(f"{_join(path, 'split')}: expected train/val/test fractions (train > 0) that sum to 1, got {show_value(split)}")
        bands = obj.bands
        if not bands or len(set(bands)) != len(bands) or any(b not in ("IR", "G", "B", "R") for b in bands):
            raise UserError(f"{_join(path, 'bands')}: expected distinct bands of IR, G, B, R, got {show_value(bands)}")
        for key in ("mean", "std"):
            values = getattr(obj, key)
            if values is not None and (not values or any(key == "std" and v <= 0 for v in values)):
                raise UserError(
                    f"{_join(path, key)}: expected one {'positive ' if key == 'std' else ''}number per channel, got {show_value(values)}"
                )
        for name, weight in (obj.class_weights or {}).items():
            _number(weight, float, {"range": (0.0, None)}, _join(path, f"class_weights.{name}"))
        for key in ("root", "manifest", "cache_dir"):
            setattr(obj, key, expand_env(getattr(obj, key), _join(path, key)))
    if isinstance(obj, DataConfig) and obj.val_fraction <= 0:
        raise UserError(
            f"{_join(path, 'val_fraction')}: expected a number in (0, 0.9], got {show_value(obj.val_fraction)} (validation is "
            "carved from the training rows)"
        )
    if isinstance(obj, OptimConfig) and not 0 < obj.pct_start < 1:
        raise UserError(
            f"{_join(path, 'pct_start')}: expected a number in (0, 1), got {show_value(obj.pct_start)} (OneCycle needs a "
            "warm-up and an annealing phase)"
        )
    if isinstance(obj, RunConfig):
        _check_run(obj)
    if isinstance(obj, NoiseConfig):
        obj.clean_subset = expand_env(obj.clean_subset, _join(path, "clean_subset"))
        if obj.clean_subset is not None and obj.mode != "real":
            raise UserError(f"{_join(path, 'clean_subset')}: only used with mode: real (verified labels of real noise)")
        if obj.verified is not None:
            if not isinstance(obj.verified, list) or not obj.verified or not all(isinstance(f, str) for f in obj.verified):
                raise UserError(f"{_join(path, 'verified')}: expected a list of review sheet files (CSV), got {show_value(obj.verified)}")
            obj.verified = [expand_env(f, f"{_join(path, 'verified')}[{i}]") for i, f in enumerate(obj.verified)]


def default_warmup(q: int, epochs: int) -> int:
    """CoSELFIE/MHSS: W = max(q + ceil(E / 10), ceil(E / 3)) (METHODS.md section 5): the untrained network's
    first epochs never reach the history used for the first correction. E: the epochs of a round."""
    return max(q + math.ceil(epochs / 10), math.ceil(epochs / 3))


def _check_run(cfg: RunConfig) -> None:
    """Settings that would make a run meaningless, refused before it starts."""
    m, epochs = cfg.method, cfg.schedule.epochs
    spec = METHODS.get(m.name)
    round_length = RoundSchedule.of(cfg).length
    if m.restarts and not spec.histories:
        keeping = " and ".join(s.name for s in METHODS.specs() if s.histories)
        raise UserError(f"method.restarts: {m.restarts} with method {m.name}: only {keeping} correct labels that a restart keeps")
    if m.restarts and round_length < 2:
        raise UserError(
            f"method.restarts: {m.restarts} restarts in schedule.epochs {epochs} leave rounds of {round_length} epoch (at least 2 each)"
        )
    warmup = spec.warmup_epochs(cfg) if spec.warmup_epochs is not None else 0  # the method's own rule (its registry entry)
    if m.restarts and warmup >= round_length:
        key = "method.warmup" if m.warmup is not None else "method.restarts"
        raise UserError(
            f"{key}: {warmup} warm-up epochs in rounds of {round_length} (schedule.epochs {epochs}, method.restarts {m.restarts}): "
            "no round would select or correct (fewer restarts, more epochs or a shorter warm-up)"
        )
    if spec.warmup and m.warmup is not None and m.warmup >= epochs:
        shorter = max(epochs - 1, 0)
        q = f" method.q={min(m.q, shorter)}" if spec.histories and m.q > shorter else ""  # the history must fit the warm-up
        raise UserError(
            f"method.warmup: {m.warmup} warm-up epochs with schedule.epochs {epochs}: {m.name} would never start (keep it below "
            f"the epochs; for a short try, set method.warmup={shorter}{q})"
        )
    if spec.histories and m.warmup is not None and m.warmup < m.q:
        raise UserError(
            f"method.warmup: {m.warmup} is below method.q {m.q}: the first corrections would read the untrained network's "
            "predictions (keep warmup >= q)"
        )
    if spec.forgets and m.noise_rate_source == "estimated" and not spec.estimates_rates:
        raise UserError(
            f"method.noise_rate_source: estimated: {m.name} cannot estimate its noise rates (its registry entry does not "
            "say estimates_rates); give method.noise_rates, or use oracle or verified"
        )
    if spec.forgets and m.onset == "plateau":
        if m.noise_rate_holdout <= 0:
            raise UserError(
                "method.onset: plateau watches the images each network holds out, and method.noise_rate_holdout is 0 "
                "(give it a share, 0.2 by default, or use method.onset: clock)"
            )
        if m.restarts:
            raise UserError(f"method.onset: plateau with method.restarts {m.restarts}: a restart's round has no onset rule yet (use clock)")
        if m.warmup is not None:
            raise UserError("method.warmup: a fixed warm-up and method.onset: plateau exclude each other (drop one)")
    if m.noise_rate_source == "verified" and not cfg.noise.verified:
        raise UserError(
            "method.noise_rate_source: verified measures the rates on the random sample of noise.verified, which is not set "
            "(mhss-audit --review FILE.csv --sample N writes one)"
        )
    if spec.forgets and m.noise_rate_source == "given":
        check_forget_rates(m.alpha, m.noise_rates or [], m.noise_rate, granularity=m.granularity, per_class=forgets_per_class(cfg))


# A forget rate at or above this rounds to 1 at the 6 decimals the selection counts with (METHODS.md section 3)
FORGETS_ALL = 0.9999995


def check_forget_rates(
    alpha: float,
    rates: list[float],
    rate: float | None = None,
    source: str = "method.noise_rates",
    granularity: str = "per_class",
    per_class: bool = True,
) -> None:
    """A forget rate alpha * eps that rounds to 1 drops every entry it applies to: nothing to train on. The
    rates judged are the ones the method forgets with: each class's (`per_class`: MHSS's CDNR), else one for
    every class (method.noise_rate, or the mean of the per-class rates: Co-teaching, CoSELFIE, MHSS without
    CDNR); with `granularity: global` the selection ranks every entry with the mean rate, the one judged."""
    if not per_class and rate is not None:
        named = [("method.noise_rate (the one rate this method forgets every class with)", rate)]
    elif not per_class and rates:
        named = [(f"the mean of {source} (the one rate this method forgets every class with)", sum(rates) / len(rates))]
    elif granularity == "global" and rates:
        named = [(f"the mean of {source} (granularity global)", sum(rates) / len(rates))]
    else:
        named = [(f"{source}[{i}]", r) for i, r in enumerate(rates)] + ([("method.noise_rate", rate)] if rate is not None else [])
    for key, r in named:
        if alpha * r >= FORGETS_ALL:
            raise UserError(
                f"method.alpha: alpha {alpha:g} x {key} {r:g} = {alpha * r:.7g}, a forget rate of 1 or more (at 6 decimals): "
                "that class would train on nothing"
            )


def forgets_per_class(cfg: "RunConfig") -> bool:
    """Whether the run's method forgets each class at its own rate (registry: MethodSpec.class_rates)."""
    from .registry import METHODS

    spec = METHODS.get(cfg.method.name)
    return bool(spec.class_rates and spec.class_rates(cfg))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Optional[str], path: str) -> Optional[str]:
    """`${VAR}` and `${VAR:-default}` in a path, as a shell would expand them; an unset VAR without
    a default is an error naming the key, never an empty path."""
    if value is None:
        return None

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if os.environ.get(name):
            return os.environ[name]
        if default is None:
            raise UserError(f"{path}: environment variable {name} is not set (set it, or give the path with --set {path}=...)")
        return default

    return _ENV_REF.sub(sub, value)


# ----------------------------------------------------------------------------- files and overrides


def _override_value(key: str, raw: str) -> Any:
    """A `--set` value read as YAML (1e-3, [0.1, 0.2], true); text that is not YAML stays text."""
    try:
        return parse_yaml(raw, f"--set {key}")
    except UserError as exc:
        if "invalid YAML" in str(exc):
            return raw
        raise


INDEXED_KEY = re.compile(r"^(.*)\[(\d+)\]$")


def set_key(data: dict, key: str, value: Any, where: str | None = None) -> None:
    """Set a dotted key path (with an optional trailing [i] list index) in a nested mapping, in place;
    `where` names the key in the error when a part of the path holds a value, not a section."""
    m = INDEXED_KEY.match(key)
    parts = (m.group(1) if m else key).split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{where or key}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    if m:
        items = node.get(parts[-1])
        if not isinstance(items, list):
            items = node[parts[-1]] = []
        i = int(m.group(2))
        items.extend([None] * (i + 1 - len(items)))
        items[i] = value
    else:
        node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` strings (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item}: expected key=value, e.g. method.alpha=0.5")
        set_key(data, key, _override_value(key, raw), where=f"--set {key}")
    return data


def apply_point(base: dict, point: dict) -> dict:
    """The run-config mapping of one point of a search space ({dotted key: value}): a copy of the base
    with the values set (per-class noise rates make the forget rates use them: noise_rate_source given)."""
    data = copy.deepcopy(base)
    for key, value in point.items():
        set_key(data, key, value)
        if key.startswith("method.noise_rates["):
            set_key(data, "method.noise_rate_source", "given")
    return data


_KEY_PATH = re.compile(r"^([A-Za-z_][\w.]*)(\[\d+\])?:")


def blame(exc: UserError, path: str | Path, overrides: list[str] | None) -> UserError:
    """The error with its source in front: the `--set` flag that set the key it names, else the file."""
    message = str(exc)
    m = _KEY_PATH.match(message)
    if m:
        named = m.group(1)
        for item in reversed(overrides or []):
            key = item.partition("=")[0].strip()
            if named == key or named.startswith(key + ".") or key.startswith(named + "."):
                return UserError(f"--set {item}: {message}")
    return UserError(f"{path}: {message}")


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config (or the base run config of a search-space file) with `--set` overrides."""
    data = read_yaml(path)
    base = {k: v for k, v in data.items() if k not in STUDY_BLOCKS}
    apply_overrides(base, overrides or [])
    try:
        return from_dict(RunConfig, base)
    except UserError as exc:
        raise blame(exc, path, overrides) from None
