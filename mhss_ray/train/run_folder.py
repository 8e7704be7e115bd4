"""The output folder of a plain `mhss-train` run.

config.yaml     the resolved run config (what --resume reads back)
metrics.jsonl   one JSON line per epoch
checkpoint/     the latest epoch's checkpoint (replaced atomically)
summary.json, summary.md   written at the end
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import yaml

from ..config import RunConfig, from_dict, read_yaml
from ..disk_space import disk_full_line, is_disk_full
from ..errors import UserError
from ..outputs import FolderKind, check_not_reading, check_replaceable, check_writable, remove_owned, write_marker
from ..methods.stats import SELECTION_KEYS
from .checkpoint import CHECKPOINT_FILE, load_checkpoint


# Everything a run writes into its folder; --overwrite removes these and nothing else.
RUN = FolderKind(
    "mhss-train", ".mhss-run", (".mhss-run", "config.yaml", "metrics.jsonl", "checkpoint", "summary.json", "summary.md", "*.tmp")
)


def run_inputs(cfg: RunConfig) -> dict:
    """The paths a run reads, which its output folder must stay clear of."""
    return {
        "data.root": cfg.data.root,
        "model.pretrained_path": cfg.model.pretrained_path,
        "noise.clean_subset": cfg.noise.clean_subset,
        **{f"noise.verified[{i}]": f for i, f in enumerate(cfg.noise.verified or [])},
    }


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.metrics_file = self.path / "metrics.jsonl"
        self.checkpoint_dir = self.path / "checkpoint"

    # ------------------------------------------------------------ starting

    def create(self, cfg: RunConfig, overwrite: bool = False, config_file: str | None = None) -> None:
        """Start a run here. The folder must be new, empty, or (with `overwrite`) a run folder that
        holds only what mhss-train wrote; it is never a folder the run reads from."""
        check_writable(self.path, "--out")
        check_not_reading(self.path, {"config file": config_file, **run_inputs(cfg)}, "mhss-train", inside_ok=True)
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                if RUN.owns(self.path):
                    raise UserError(f"{self.path}: already holds a run; pass --resume to continue it or --overwrite to replace it")
                raise UserError(f"{self.path}: holds files that are not an mhss-train run; choose another --out")
            check_replaceable(self.path, RUN, "--out")
            remove_owned(self.path, RUN)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_marker(self.path, RUN)
            self.config_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        except OSError as exc:  # a read-only mount, a full disk: what os.access cannot foresee
            raise UserError(f"--out {self.path}: cannot write ({exc.strerror or exc.__class__.__name__})") from None

    def discard(self, created: bool, cache_dir: str | None = None) -> None:
        """Remove a run that stopped before its first epoch: what it wrote in its folder, the folder itself only
        if the run `created` it (an empty folder the user gave stays), and `cache_dir`, a decode cache it started."""
        if self.path.is_dir() and RUN.owns(self.path):
            remove_owned(self.path, RUN)
            if not created:
                self.path.mkdir()
        if cache_dir and cache_dir != "off" and "://" not in str(cache_dir):
            shutil.rmtree(Path(str(cache_dir)).expanduser(), ignore_errors=True)

    def open_for_resume(self) -> tuple[RunConfig, dict | None]:
        """The saved config and latest checkpoint (None if the run died before its first one).
        Metric lines of epochs after the checkpoint are dropped: those epochs will run again."""
        if not self.config_file.is_file():
            raise UserError(f"{self.path}: holds no run to resume (no config.yaml)")
        try:
            cfg = from_dict(RunConfig, read_yaml(self.config_file))
        except UserError as exc:
            raise UserError(f"{self.config_file}: {exc}") from None
        state = None
        if (self.checkpoint_dir / CHECKPOINT_FILE).is_file():
            state = load_checkpoint(self.checkpoint_dir)
            changed = first_difference(state["config"], cfg.to_dict())
            if changed:
                raise UserError(
                    f"{self.config_file}: {changed} differs from the checkpoint's config; a run resumes with the config it started with"
                )
        last_done = state["epoch"] if state else 0
        kept = [m for m in self.read_metrics() if m["epoch"] <= last_done]
        self._write_atomic(self.metrics_file, "".join(json.dumps(m) + "\n" for m in kept))
        return cfg, state

    # ------------------------------------------------------------ during the run

    def report(self, metrics: dict, checkpoint_dir: str) -> None:
        # Metrics first, checkpoint second: a kill in between leaves a metric line newer than the
        # checkpoint, which open_for_resume drops; the checkpoint file itself is replaced atomically.
        # A full disk: the partial copy goes, and the line newer than the last checkpoint is dropped
        # by --resume, which carries on from that checkpoint once there is room again.
        tmp = self.checkpoint_dir / (CHECKPOINT_FILE + ".tmp")
        source = Path(checkpoint_dir) / CHECKPOINT_FILE
        try:
            with self.metrics_file.open("a") as f:
                f.write(json.dumps(metrics) + "\n")
            self.checkpoint_dir.mkdir(exist_ok=True)
            shutil.copyfile(source, tmp)
            os.replace(tmp, self.checkpoint_dir / CHECKPOINT_FILE)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            raise UserError(disk_full_line("--out", self.path, source.stat().st_size, f"mhss-train --resume --out {self.path}")) from None

    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.is_file():
            return []
        rows = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: it and anything after it are not trusted
        return rows

    # ------------------------------------------------------------ the end

    def write_summary(self, cfg: RunConfig, class_names: list[str], review: dict | None = None) -> dict:
        """`review`: what noise.verified brought (Trainer.review): entries, the rates of its random sample,
        the audit's precision as reviewed."""
        history = self.read_metrics()
        summary = summarise(history, class_names)
        if review:
            summary["review"] = review
        summary["config"] = cfg.to_dict()
        self._write_atomic(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")
        self._write_atomic(self.path / "summary.md", summary_markdown(summary, cfg))
        return summary

    @staticmethod
    def _write_atomic(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def first_difference(a: dict, b: dict, path: str = "") -> str | None:
    """The key path of the first value that differs between two nested mappings, or None."""
    for key in sorted(set(a) | set(b)):
        where = f"{path}.{key}" if path else key
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = first_difference(va, vb, where)
            if found:
                return found
        elif va != vb:
            return where
    return None


def summarise(history: list[dict], class_names: list[str]) -> dict:
    """Test mAP at the end, as the mean of the last 3 epochs, and at the best clean-val epoch."""
    last = history[-1]
    best = max(history, key=lambda m: m["val_mAP"])
    tail = [m["test_mAP"] for m in history[-3:]]
    return {
        "epochs": len(history),
        "test_mAP_final": last["test_mAP"],
        "test_mAP_last3_mean": sum(tail) / len(tail),
        "best_val_epoch": best["epoch"],
        "test_mAP_at_best_val": best["test_mAP"],
        "test_f1_micro_final": last["test_f1_micro"],
        "test_f1_macro_final": last["test_f1_macro"],
        "test_AP_final": {c: last[f"test_AP_{c}"] for c in class_names},
        # realised rates need clean labels: synthetic noise or a verified subset; real noise alone has none
        "noise_rates": {c: last.get(f"noise_rate_{c}") for c in class_names},
        "noise_rate_mean": last.get("noise_rate"),
        "noise_rates_estimated": {c: last[f"noise_rate_hat_{c}"] for c in class_names if f"noise_rate_hat_{c}" in last} or None,
        "noise_rates_estimated_at_cap": [c for c in class_names if last.get(f"noise_rate_hat_capped_{c}")],
        "images_per_s_mean": sum(m["images_per_s"] for m in history) / len(history),
        "total_seconds": sum(m["epoch_seconds"] for m in history),
        "checkpoint": f"checkpoint/{CHECKPOINT_FILE}",
        "selection_final": {k: _known(last[k]) for k in SELECTION_KEYS if k in last},
    }


def _known(x):
    """None (JSON null: not known) for a figure that needs clean labels nobody has."""
    return None if isinstance(x, float) and math.isnan(x) else x


def _f(x: float | None, fmt: str = ".2f", missing: str = "n/a") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


NOT_KNOWN = "not known (no clean labels)"


def summary_markdown(s: dict, cfg: RunConfig) -> str:
    lines = [
        f"# Run summary: {cfg.method.name} on {cfg.data.name} ({cfg.model.name})",
        "",
        f"Noise: {cfg.noise.mode}"
        + (f" (eps = {cfg.noise.rate})" if cfg.noise.mode in ("naive", "complex") else "")
        + f", realised mean eps_c {_f(s['noise_rate_mean'], '.4f', NOT_KNOWN)}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| epochs | {s['epochs']} |",
        f"| test mAP, last epoch | {_f(s['test_mAP_final'])} |",
        f"| test mAP, mean of last 3 epochs | {_f(s['test_mAP_last3_mean'])} |",
        f"| test mAP at best val epoch ({s['best_val_epoch']}) | {_f(s['test_mAP_at_best_val'])} |",
        f"| test F1 micro / macro at 0.5 | {_f(s['test_f1_micro_final'])} / {_f(s['test_f1_macro_final'])} |",
        f"| training images/s (mean) | {s['images_per_s_mean']:.0f} |",
        f"| total seconds | {s['total_seconds']:.1f} |",
        *[f"| {k.replace('_', ' ')}, last epoch | {_f(v, '.4g', 'not known')} |" for k, v in s["selection_final"].items()],
        "",
        "| class | test AP | realised eps_c | estimated eps_c |",
        "| --- | --- | --- | --- |",
    ]
    estimated = s.get("noise_rates_estimated") or {}
    capped = set(s.get("noise_rates_estimated_at_cap") or [])
    lines += [
        f"| {c} | {_f(s['test_AP_final'][c])} | {_f(s['noise_rates'][c], '.4f', 'not known')} | "
        f"{_f(estimated.get(c), '.4f', '-')}{' (cap)' if c in capped else ''} |"
        for c in s["test_AP_final"]
    ]
    if capped:
        lines += [
            "",
            f"(cap): a polarity's estimated rate of {', '.join(sorted(capped))} is the estimator's cap of 0.5, not a measurement "
            "(too few entries of that polarity, or networks that knew too little to tell).",
        ]
    review = s.get("review")
    if review:
        lines += ["", f"Verified labels (noise.verified): {review['verified_entries']} entries, {review['labels_changed']} corrected."]
        if "audit_precision" in review:
            p = review["audit_precision"]
            lines.append(
                f"The audit's suspects as reviewed: {p['suspects_wrong']} of {p['suspects_checked']} were wrong, precision "
                f"{p['precision']:.3f} (95% interval {p['low']:.3f}-{p['high']:.3f})."
            )
        if "sample_rates" in review:
            lines.append(f"Noise measured on {review['sample_images']} randomly sampled images (eps_c, 95% interval):")
            lines += [f"- {c}: {e['eps']:.3f} ({e['low']:.3f}-{e['high']:.3f})" for c, e in review["sample_rates"].items()]
    return "\n".join(lines) + "\n"
