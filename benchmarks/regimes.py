"""The regime map: which method wins where, from scratch and from a pretrained start, short and long.

    python benchmarks/regimes.py --cells scratch-1000x30 scratch-2000x90 --seeds 0     # develop on one seed
    python benchmarks/regimes.py                                                      # every cell x method x seed
    python benchmarks/regimes.py --table-only                                         # tables and plots from the store

Each cell is compare_methods.py's user setting (RandAugment on, complex noise 0.2, noise rates estimated
from the data, one CPU thread per run) at its own size, schedule and start (`pretrained`: the network
`mhss-pretrain` writes for resnet18 at 32 px, built once and cached). Co-teaching and MHSS start at the
onset (`method.onset: plateau`); the rows named -clock keep the paper's fixed warm-up and ramp. Every finished run is stored at once
in results/regimes_runs.json with its config's fingerprint: a stopped map continues where it stopped,
several processes (`--variants`/`--seeds` split between them) share the store, and a run whose config has
changed since (a new rule) is trained again while the others are kept. Written: results/regimes.json (one
row per run), results/regimes.md (the tables), results/regimes/<cell>.png (test mAP per epoch).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from compare_methods import USER_VARIANTS, run_config, run_one  # noqa: E402

from mhss_ray.config import read_yaml  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
NOISE = "complex-0.2"


@dataclass(frozen=True)
class Cell:
    n_train: int
    epochs: int
    pretrained: bool


CELLS = {
    "scratch-1000x30": Cell(1000, 30, False),
    "scratch-2000x90": Cell(2000, 90, False),
    "pretrained-1000x30": Cell(1000, 30, True),
    "pretrained-2000x60": Cell(2000, 60, True),
    "pretrained-4000x30": Cell(4000, 30, True),
}
ESTIMATED = {"noise_rate_source": "estimated"}
PLATEAU = {"onset": "plateau"}
VARIANTS = {
    "asl-clean": USER_VARIANTS["asl-clean"],
    "asl": USER_VARIANTS["asl"],
    "coteaching": {"method": {"name": "coteaching", **PLATEAU, **ESTIMATED}},
    "mhss": {"method": {"name": "mhss", **PLATEAU, **ESTIMATED}},
    "disc": USER_VARIANTS["disc"],
    # where they explain a gap (not in the default run): the paper's fixed clock, the oracle's rates
    "mhss-clock": {"method": {"name": "mhss", "onset": "clock", **ESTIMATED}},
    "coteaching-clock": {"method": {"name": "coteaching", "onset": "clock", **ESTIMATED}},
    "mhss-oracle": {"method": {"name": "mhss", **PLATEAU}},
    "coteaching-oracle": {"method": {"name": "coteaching", **PLATEAU}},
}
MAIN = ["asl-clean", "asl", "coteaching", "mhss", "disc"]
PAIRS = [("mhss", "asl"), ("coteaching", "asl"), ("disc", "asl"), ("mhss", "mhss-clock"), ("mhss", "mhss-oracle"),
         ("coteaching", "coteaching-oracle")]  # fmt: skip


def pretrained_file(threads: int | None) -> str:
    """The pretrained start of the pretrained cells (mhss-pretrain's defaults for resnet18 at 32 px, 1 channel)."""
    from mhss_ray.pretrain.command import PretrainSpec, pretrain

    return str(pretrain(PretrainSpec(model="resnet18", image_size=32, in_chans=1), REPO / "runs" / "pretrained", threads=threads))


def cell_config(cell: str, variant: str, seed: int, threads: int | None, pretrained: str | None):
    c = CELLS[cell]
    base = read_yaml(REPO / "benchmarks" / "base.yaml")
    if c.pretrained:
        base["model"] = {**base["model"], "pretrained_path": pretrained}
    return run_config(base, variant, NOISE, seed, c.n_train, c.epochs, "cpu", threads, {**USER_VARIANTS, **VARIANTS}, augment=True)


def fingerprint(cfg) -> str:
    """The run's config, hashed: the method section by the keys its method reads (a key added for another
    method leaves the stored runs valid), the pretrained file by its name (which holds its own digest), no
    runtime (a rerun with other threads keeps what is stored)."""
    from mhss_ray.registry import METHODS

    data = cfg.to_dict()
    spec = METHODS.get(cfg.method.name)
    data["method"] = {k: v for k, v in data["method"].items() if k == "name" or k in spec.keys or k in spec.warmup_reads}
    data.pop("runtime")
    path = data["model"]["pretrained_path"]
    data["model"]["pretrained_path"] = Path(path).name if path else None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def after_run(trainer) -> dict:
    """What the trained run adds to its row: the onset, and the estimate's signed error per class and polarity
    (estimated minus realised share of wrong entries among the observed negatives and positives)."""
    import torch

    method = trainer.method
    out = {"onset_epoch": getattr(method, "onset", None)}
    estimate = getattr(getattr(method, "estimated", None), "polarity", None)
    if estimate is not None:
        wrong, pos = (trainer.observed != trainer.clean).cpu(), trainer.observed.bool().cpu()
        true = torch.stack([(wrong & ~pos).sum(0) / (~pos).sum(0).clamp(min=1), (wrong & pos).sum(0) / pos.sum(0).clamp(min=1)])
        error = estimate.cpu().float() - true.float()
        out["rate_signed_error"] = {
            "negatives": [round(float(x), 4) for x in error[0]],
            "positives": [round(float(x), 4) for x in error[1]],
        }
    return out


# ----------------------------------------------------------------------------- the store, shared by processes


def _locked(path: Path):
    lock = open(path.with_suffix(".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def load_store(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def save_run(path: Path, key: str, run: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        store = load_store(path)
        store["runs"][key] = run
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(store, indent=1) + "\n")
        tmp.replace(path)


# ----------------------------------------------------------------------------- the tables


def row(key: str, r: dict) -> dict:
    cell, variant, seed = key.split("|")
    curve = r["curve_test_mAP"]
    return {
        "cell": cell, "method": variant, "seed": int(seed), "noise_rate_source": r["noise_rate_source"], "onset_rule": r.get("onset_rule"),
        "onset_epoch": r.get("onset_epoch"), "pretrained": r.get("pretrained"), "n_train": CELLS[cell].n_train,
        "epochs": CELLS[cell].epochs, "test_mAP": curve, "final": float(np.mean(curve[-3:])), "peak": float(max(curve)),
        "peak_epoch": int(np.argmax(curve)) + 1, "labels_changed": r.get("labels_changed"),
        "labels_changed_precision": r.get("labels_changed_precision"), "seconds": r.get("seconds"),
        "rate_signed_error": r.get("rate_signed_error"),
    }  # fmt: skip


def _ms(values) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
    return f"{np.mean(vals):.2f}" + (f" ± {np.std(vals, ddof=1):.2f}" if len(vals) > 1 else "")


def paired(a: list[dict], b: list[dict]) -> str:
    """Mean per-seed difference of `final`, with a 95% paired-t interval."""
    from scipy import stats

    by_seed = {r["seed"]: r["final"] for r in b}
    d = np.array([r["final"] - by_seed[r["seed"]] for r in a if r["seed"] in by_seed])
    if len(d) == 0:
        return ""
    if len(d) == 1:
        return f"{d.mean():+.2f} (1 seed)"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] ({len(d)} seeds)"


def cell_table(cell: str, runs: list[dict]) -> list[str]:
    c = CELLS[cell]
    start = "pretrained start (mhss-pretrain)" if c.pretrained else "from scratch"
    lines = [f"## {cell}: {start}, {c.n_train} images, {c.epochs} epochs", ""]
    by = {v: sorted((r for r in runs if r["method"] == v), key=lambda r: r["seed"]) for v in VARIANTS}
    asl = by["asl"]
    if asl:
        lines.append(f"ASL's memorisation (peak − final): {_ms([r['peak'] - r['final'] for r in asl])} "
                     f"(peak at epoch {', '.join(str(r['peak_epoch']) for r in asl)}).")  # fmt: skip
        lines.append("")
    lines += ["| method | seeds | final test mAP (last 3) | peak | onset epoch | labels changed | their precision | − ASL | "
              "rate error (neg., pos.) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for v, rs in by.items():
        if not rs:
            continue
        onsets = ", ".join("-" if r["onset_epoch"] is None else str(r["onset_epoch"]) for r in rs)
        vs_asl = paired(rs, asl) if v != "asl" and asl else ""
        fixed = v in ("asl", "asl-clean")  # no labels of their own: what they 'changed' is the noise itself
        changed = "- | -" if fixed else f"{_ms([r['labels_changed'] for r in rs])} | {_ms([r['labels_changed_precision'] for r in rs])}"
        errors = [r["rate_signed_error"] for r in rs if r.get("rate_signed_error")]
        signed = ", ".join(f"{np.mean([np.mean(e[p]) for e in errors]):+.3f}" for p in ("negatives", "positives")) if errors else "-"
        lines.append(
            f"| {v} | {len(rs)} | {_ms([r['final'] for r in rs])} | {_ms([r['peak'] for r in rs])} | {onsets} | {changed} | {vs_asl} "
            f"| {signed} |"
        )
    lines.append("")
    extra = [(a, b) for a, b in PAIRS if b != "asl" and by[a] and by[b]]
    if extra:
        lines += ["| difference | mean [95% interval] |", "| --- | --- |"]
        lines += [f"| {a} − {b} | {paired(by[a], by[b])} |" for a, b in extra]
        lines.append("")
    clean = by["asl-clean"]
    if clean and c.epochs > 10:  # is the schedule long enough? the clean bound should have stopped gaining
        gains = [r["test_mAP"][-1] - r["test_mAP"][-11] for r in clean]
        lines += [f"Clean ASL's gain over its last 10 epochs: {_ms(gains)} (a schedule long enough gains < 0.3).", ""]
    if by["mhss"] and asl and by["asl-clean"]:
        gap = np.mean([r["final"] for r in by["asl-clean"]]) - np.mean([r["final"] for r in asl])
        closed = np.mean([r["final"] for r in by["mhss"]]) - np.mean([r["final"] for r in asl])
        lines += [f"MHSS closes {closed / gap:.0%} of the gap from ASL to the clean bound ({gap:.2f} points).", ""]
    lines += [f"![{cell}](regimes/{cell}.png)", ""]
    return lines


def plot(cell: str, runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in VARIANTS:
        curves = [r["test_mAP"] for r in runs if r["method"] == v]
        if curves:
            mean = np.mean(np.array(curves), 0)
            ax.plot(np.arange(1, len(mean) + 1), mean, label=f"{v} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test mAP (mean over seeds)")
    ax.set_title(cell)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def write_tables(store: dict, folder: Path = RESULTS) -> str:
    """regimes.json, regimes.md and the plots, into `folder` (the store's own: a trial store elsewhere leaves the
    committed tables alone)."""
    rows = [row(k, r) for k, r in sorted(store["runs"].items())]
    (folder / "regimes.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# The regime map",
        "",
        "Written by `benchmarks/regimes.py`: digits-mosaic, complex noise 0.2, RandAugment on, noise rates estimated from the data "
        "(rows named -oracle: the oracle's), timm resnet18 at 32 px, batch 128, Adam + OneCycle at lr 0.001, one CPU thread per run. "
        "Final: the mean test mAP of the last 3 epochs; peak: the best epoch's. Differences are paired by seed, with a 95% t interval. "
        "Onset: the epochs trained before the method first selected (`method.onset`, docs/methods.md). Rate error: the estimated "
        "minus the realised share of wrong entries among a class's observed negatives and positives, averaged over the classes "
        "(signed: + runs high; per class in regimes.json).",
        "",
    ]
    for cell in CELLS:
        runs = [r for r in rows if r["cell"] == cell]
        if runs:
            lines += cell_table(cell, runs)
            plot(cell, runs, folder / "regimes" / f"{cell}.png")
    md = "\n".join(lines)
    (folder / "regimes.md").write_text(md + "\n")
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--variants", nargs="+", default=MAIN, choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1: one run per core)")
    parser.add_argument("--results", default=str(RESULTS / "regimes_runs.json"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if not args.table_only:
        pretrained = pretrained_file(args.threads) if any(CELLS[c].pretrained for c in args.cells) else None
        for seed in args.seeds:  # seed-major: a partial map still covers every method
            for cell in args.cells:
                for variant in args.variants:
                    key = f"{cell}|{variant}|{seed}"
                    cfg = cell_config(cell, variant, seed, args.threads, pretrained)
                    digest = fingerprint(cfg)
                    if load_store(path)["runs"].get(key, {}).get("config") == digest:
                        continue
                    print(f"== {key}", flush=True)
                    r = run_one(cfg, after=after_run)
                    forgets = cfg.method.name in ("coteaching", "coselfie", "mhss")
                    r.update(config=digest, onset_rule=cfg.method.onset if forgets else None,
                             pretrained=Path(pretrained).name if CELLS[cell].pretrained else None)  # fmt: skip
                    save_run(path, key, r)
                    print(
                        f"   -> final {np.mean(r['curve_test_mAP'][-3:]):.2f}, peak {max(r['curve_test_mAP']):.2f}, {r['seconds']:.0f} s",
                        flush=True,
                    )
    print(write_tables(load_store(path), path.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
