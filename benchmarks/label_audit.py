"""How right is `mhss-audit`'s list of suspected label errors? Against the injected noise of digits-mosaic.

    python benchmarks/noise_estimation.py --part mhss --seeds 0 1 2     # MHSS runs (estimated rates), audited at their end
    python benchmarks/label_audit.py --seeds 0 1 2                      # the anchor: ASL's loss ranking; then the table
    python benchmarks/label_audit.py --table-only

The audited runs are MHSS with the noise rates it estimates itself (`method.noise_rate_source: estimated`),
what someone without clean labels runs; noise_estimation.py trains them and calls `audit_scores` here on
each finished run. The anchor is the simplest ranking: a plain ASL network trained on the noisy labels
(same config), every training entry ranked by its loss on the observed label, largest first. Figures: the
list's precision and recall against the injected noise, and the precision among its first k rows, k = the
number of injected errors (the anchor's first k entries likewise). cleanlab's multi-label
`find_label_issues` is compared only where it is installed (it is not a dependency: AGPL); here it was not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import load_runs, save_run  # noqa: E402
from compare_methods import NOISES, run_config, run_one  # noqa: E402

from mhss_ray.apply.audit import audit, training_logits  # noqa: E402
from mhss_ray.config import read_yaml  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STORE = RESULTS / "label_audit_runs.json"
MHSS_STORE = RESULTS / "noise_estimation_runs.json"
ANCHOR = {"asl": {"method": {"name": "asl"}}}


def _scores(listed_rows: np.ndarray, listed_cols: np.ndarray, noise: np.ndarray) -> dict:
    hits = noise[listed_rows, listed_cols].astype(bool)
    k = int(noise.sum())
    top = hits[:k]
    return {
        "listed": int(len(hits)),
        "injected": k,
        "precision": float(hits.mean()) if len(hits) else float("nan"),
        "recall": float(hits.sum() / k) if k else float("nan"),
        "precision_at_k": float(top.mean()) if len(top) else float("nan"),
        "recall_at_k": float(top.sum() / k) if k else float("nan"),
    }


def audit_scores(trainer) -> dict:
    """The audit of a trained run against its injected noise (`trainer.noise.mask`)."""
    table = audit(trainer)
    classes = {c: i for i, c in enumerate(trainer.data.class_names)}
    cols = np.array([classes[c] for c in table["class"]], dtype=int)
    out = _scores(table["row"].to_numpy(), cols, trainer.noise.mask)
    out["corrected"] = int(table["corrected"].sum())
    return {f"audit_{k}": v for k, v in out.items()}


def loss_ranking_scores(trainer) -> dict:
    """The anchor: every entry ranked by the loss of the (first) network on its observed label."""
    z = training_logits(trainer)[0]
    loss = trainer.method.loss_fn(z, trainer.observed).flatten()
    order = torch.argsort(loss, descending=True, stable=True).cpu().numpy()
    c = trainer.observed.shape[1]
    k = int(trainer.noise.mask.sum())
    rows, cols = order[:k] // c, order[:k] % c  # the ranking's first k entries: its list at k
    return {f"anchor_{key}": v for key, v in _scores(rows, cols, trainer.noise.mask).items()}


def use_results(folder: Path) -> None:
    global RESULTS, STORE, MHSS_STORE
    RESULTS = folder
    STORE = folder / STORE.name
    MHSS_STORE = folder / MHSS_STORE.name


def _fmt(values) -> str:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return "-"
    return f"{np.mean(vals):.3f}" + (f" ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else "")


def table() -> tuple[str, dict]:
    mhss, anchor = load_runs(MHSS_STORE)["runs"], load_runs(STORE)["runs"]
    summary: dict = {}
    lines = [
        "# Suspected label errors (`mhss-audit`) against the injected noise",
        "",
        "Written by `benchmarks/label_audit.py` (setup in its docstring): mean over seeds (per seed in brackets).",
        "k = the number of injected errors; precision at k = the share of the first k rows that are injected errors.",
        "",
        "| noise | list | rows listed | injected (k) | precision | recall | precision at k | recall at k |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for noise in NOISES:
        seeds = sorted(int(k.split("|")[2]) for k in mhss if k.startswith(f"mhss|{noise}|") and "audit_precision" in mhss[k])
        rows = [mhss[f"mhss|{noise}|{s}"] for s in seeds]
        anchors = [anchor[f"asl|{noise}|{s}"] for s in seeds if f"asl|{noise}|{s}" in anchor]
        entry = {"seeds": seeds}
        for label, runs, prefix in (("MHSS (estimated rates)", rows, "audit_"), ("ASL loss ranking", anchors, "anchor_")):
            if not runs:
                continue

            def get(key, runs=runs, prefix=prefix):
                return [r[prefix + key] for r in runs]

            entry[label] = {key: get(key) for key in ("listed", "injected", "precision", "recall", "precision_at_k", "recall_at_k")}
            lines.append(
                f"| {noise} | {label} | {np.mean(get('listed')):.0f} | {np.mean(get('injected')):.0f} | "
                f"{_fmt(get('precision'))} | {_fmt(get('recall'))} | {_fmt(get('precision_at_k'))} | {_fmt(get('recall_at_k'))} |"
            )
        summary[noise] = entry
    return "\n".join(lines) + "\n", summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--noises", nargs="+", default=list(NOISES))
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the run store and the tables (a trial run: elsewhere)")
    args = ap.parse_args()
    use_results(args.results)
    if not args.table_only:
        torch.set_num_threads(args.threads)
        base = read_yaml(REPO / "benchmarks" / "base.yaml")
        for noise in args.noises:
            for seed in args.seeds:
                key = f"asl|{noise}|{seed}"
                if key in load_runs(STORE)["runs"]:
                    continue
                print(key, flush=True)
                cfg = run_config(base, "asl", noise, seed, args.n_train, args.epochs, threads=args.threads, variants=ANCHOR)
                save_run(STORE, key, run_one(cfg, after=loss_ranking_scores))
    text, summary = table()
    (RESULTS / "label_audit.md").write_text(text)
    (RESULTS / "label_audit.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
