"""Noise rates estimated from the networks (`method.noise_rate_source: estimated`) against the realised
ones, and MHSS trained with them against MHSS with the oracle's rates (digits-mosaic, CPU).

    python benchmarks/noise_estimation.py --part augmented --seeds 0 1 2      # the user's setting: the warm-up on RandAugment views
    python benchmarks/noise_estimation.py --part estimators --seeds 0 1 2     # the warm-up only, without augmentation: every estimator
    python benchmarks/noise_estimation.py --part mhss --seeds 0 1 2           # 30-epoch MHSS runs, estimated rates
    python benchmarks/noise_estimation.py --table-only                       # rebuild the table

The setup is that of the revision-2 method comparison (benchmarks/results/methods_runs.json): base.yaml
with 1,000 training mosaics, 30 epochs, float32, one CPU thread per run, MHSS with its defaults (q 5,
warm-up 10). `estimators`: MHSS trains its warm-up (both networks on every entry) and after every warm-up
epoch every estimator (noise.py) reads the probabilities the method recorded; `augmented`: the same with
the training images on RandAugment views, as users train (the default since the user-setting comparison); the error is the mean absolute
error of the entry-level eps_c over the classes, against the realised rates of the injected noise. `mhss`:
full runs with the estimated rates (the default estimator), compared with the oracle runs of the method
comparison (same config, the oracle's realised rates). Every finished run is stored at once in
benchmarks/results/noise_estimation_runs.json (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import load_runs, save_run  # noqa: E402
from compare_methods import NOISES, run_config, run_one  # noqa: E402
from label_audit import audit_scores  # noqa: E402


from mhss_ray.config import read_yaml  # noqa: E402
from mhss_ray.noise import ESTIMATORS, entry_rates, wrong_entries  # noqa: E402
from mhss_ray.train.loop import Trainer  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STORE = RESULTS / "noise_estimation_runs.json"
ORACLE_STORE = RESULTS / "methods_runs.json"  # the method comparison's runs (oracle rates)
VARIANTS = {
    "estimators": {"method": {"name": "mhss", "noise_rate_source": "estimated"}},  # each network holds out 20% (default)
    "augmented": {"method": {"name": "mhss", "noise_rate_source": "estimated"}},  # the same on RandAugment views
    "in-sample": {"method": {"name": "mhss", "noise_rate_source": "estimated", "noise_rate_holdout": 0.0}},
    "mhss-estimated": {"method": {"name": "mhss", "noise_rate_source": "estimated"}},
}


def use_results(folder: Path) -> None:
    global RESULTS, STORE
    RESULTS = folder
    STORE = folder / STORE.name


def realised_polarity(observed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """2 x C: the realised wrong share of the observed negatives and positives (no forget-rate check: under
    naive 0.4 every observed negative of the most frequent digit can be an omission)."""
    wrong, _ = wrong_entries(observed, clean)
    pos = observed.bool()
    return torch.stack([(wrong & ~pos).sum(0) / (~pos).sum(0).clamp(min=1), (wrong & pos).sum(0) / pos.sum(0).clamp(min=1)]).float()


def estimators(part: str, noise: str, seed: int, base: dict, n_train: int, epochs: int, threads: int) -> dict:
    cfg = run_config(base, part, noise, seed, n_train, epochs, threads=threads, variants=VARIANTS, augment=part == "augmented")
    trainer = Trainer(cfg)
    method = trainer.method
    realised = torch.from_numpy(trainer.noise.rates).float()
    observed, clean = trainer.observed.cpu(), trainer.clean.cpu()
    oracle_polarity = realised_polarity(observed, clean)
    out = {"warmup": method.warmup, "realised": realised.tolist(), "realised_polarity": oracle_polarity.tolist(), "epochs": []}
    start = time.perf_counter()
    for epoch in range(method.warmup):
        trainer.train_one_epoch(epoch)
        row = {"epoch": epoch + 1}
        for name, estimate in ESTIMATORS.items():
            t0 = time.perf_counter()
            polarity = method.estimated.estimate(estimate).cpu()
            eps_c = entry_rates(observed, polarity)
            row[name] = {
                "eps_c": eps_c.tolist(),
                "mae": float((eps_c - realised).abs().mean()),
                "polarity_mae": float((polarity - oracle_polarity).abs().mean()),
                "seconds": time.perf_counter() - t0,
            }
        out["epochs"].append(row)
        print(f"   {noise} seed {seed} epoch {epoch + 1}: " + ", ".join(f"{k} MAE {row[k]['mae']:.4f}" for k in ESTIMATORS), flush=True)
    out["seconds"] = time.perf_counter() - start
    return out


def rate_scores(trainer) -> dict:
    """The rates the run estimated (kept after its warm-up) against the realised ones; and its audit (label_audit.py)."""
    eps_c, _, _ = trainer.method.estimated.rates()
    hat, realised = eps_c.cpu().numpy(), trainer.noise.rates
    return {
        "rates_hat": hat.tolist(),
        "rates_realised": realised.tolist(),
        "rate_mae": float(np.mean(np.abs(hat - realised))),
        **audit_scores(trainer),
    }


CURVE_LABELS = {"augmented": "augmented", "estimators": "held out", "in-sample": "in-sample"}


def curve_estimator(rows: list) -> str:
    """The default estimator where every run recorded it, else the confident-joint count."""
    return "likelihood" if all("likelihood" in e for r in rows for e in r["epochs"]) else "confident"


def _mean(values) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{np.mean(vals):.4f}" + (f" ± {np.std(vals, ddof=1):.4f}" if len(vals) > 1 else "")


def _mean2(values) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{np.mean(vals):.2f}" + (f" ({', '.join(f'{v:.2f}' for v in vals)})" if len(vals) > 1 else "")


def table() -> tuple[str, dict]:
    runs = load_runs(STORE)["runs"]
    oracle = load_runs(ORACLE_STORE)["runs"]
    summary: dict = {"estimators": {}, "mhss": {}}
    lines = [
        "# Noise rates estimated from the networks",
        "",
        "Written by `benchmarks/noise_estimation.py` (see its docstring for the setup). Entry-level eps_c error:",
        "the mean absolute error over the 10 classes against the realised rates, at the end of the warm-up (the",
        "estimate MHSS keeps); per seed, then the mean. `spread` is the standard deviation of the realised",
        "rates over the classes, `flat` the error of giving every class the realised mean (what a single global",
        "rate at its true value would score).",
        "",
        "| noise | probabilities | seeds | spread of realised eps_c | flat (true global rate) | "
        + " | ".join(f"{name} MAE" for name in ESTIMATORS)
        + " | "
        + " | ".join(f"{name} per-polarity MAE" for name in ESTIMATORS)
        + " |",
        "| --- | --- | --- | --- | --- |" + " --- |" * (2 * len(ESTIMATORS)),
    ]
    parts = (("augmented", "held out, RandAugment views"), ("estimators", "held out (20% per network)"), ("in-sample", "in-sample"))
    for part, label in parts:
        for noise in NOISES:
            rows = [r for k, r in runs.items() if k.startswith(f"{part}|{noise}|")]
            if not rows:
                continue
            last = [r["epochs"][-1] for r in rows]
            spread = [float(np.std(r["realised"])) for r in rows]
            flat = [float(np.mean(np.abs(np.array(r["realised"]) - np.mean(r["realised"])))) for r in rows]
            names = [name for name in ESTIMATORS if all(name in e for e in last)]  # runs before an estimator existed lack it
            entry = {name: [e[name]["mae"] for e in last] for name in names}
            polar = {name: [e[name]["polarity_mae"] for e in last] for name in names}
            summary["estimators"][f"{part}|{noise}"] = {
                "spread": spread,
                "flat": flat,
                "mae": entry,
                "polarity_mae": polar,
                "seeds": len(rows),
            }
            cells = [_mean(entry[n]) if n in entry else "-" for n in ESTIMATORS]
            cells += [_mean(polar[n]) if n in polar else "-" for n in ESTIMATORS]
            lines.append(f"| {noise} | {label} | {len(rows)} | {_mean(spread)} | {_mean(flat)} | " + " | ".join(cells) + " |")
    curves = {
        (part, noise): [r for k, r in runs.items() if k.startswith(f"{part}|{noise}|")]
        for part in ("augmented", "estimators", "in-sample")
        for noise in NOISES
    }
    curves = {key: rows for key, rows in curves.items() if rows}
    if curves:
        lines += [
            "",
            "The estimate after each warm-up epoch: MAE (signed mean error, estimate minus realised) of the entry-level",
            "eps_c, mean over the seeds measured; the likelihood fit where the runs have it, else the confident-joint count",
            "(the runs without augmentation predate the likelihood). Held out: the estimate reads each network's predictions",
            "on its own left-out fold; augmented: the same on RandAugment views; in-sample: both networks' mean on every",
            "image, which they learn.",
            "",
            "| epoch | "
            + " | ".join(f"{noise}, {CURVE_LABELS[p]} ({curve_estimator(rows)})" for (p, noise), rows in curves.items())
            + " |",
            "| --- |" + " --- |" * len(curves),
        ]
        for e in range(max(len(r["epochs"]) for rows in curves.values() for r in rows)):
            cells = []
            for rows in curves.values():
                name = curve_estimator(rows)
                errs = [np.array(r["epochs"][e][name]["eps_c"]) - np.array(r["realised"]) for r in rows if e < len(r["epochs"])]
                cells.append(f"{np.mean([np.abs(x).mean() for x in errs]):.3f} ({np.mean([x.mean() for x in errs]):+.3f})" if errs else "-")
            lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "MHSS test mAP (mean of the last 3 epochs) with the estimated rates against the oracle's, same config and seeds:",
        "",
        "| noise | seeds | oracle rates | estimated rates | difference | MAE of the rates MHSS used |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for noise in NOISES:
        est = {k.split("|")[2]: r for k, r in runs.items() if k.startswith(f"mhss|{noise}|")}
        seeds = sorted(s for s in est if f"mhss|{noise}|{s}" in oracle)
        if not seeds:
            continue
        o = [oracle[f"mhss|{noise}|{s}"]["test_mAP_last3_mean"] for s in seeds]
        e = [est[s]["test_mAP_last3_mean"] for s in seeds]
        mae = [est[s].get("rate_mae") for s in seeds]
        diff = [b - a for a, b in zip(o, e)]
        summary["mhss"][noise] = {"seeds": [int(s) for s in seeds], "oracle": o, "estimated": e, "difference": diff, "rate_mae": mae}
        lines.append(f"| {noise} | {len(seeds)} | {_mean2(o)} | {_mean2(e)} | {_mean2(diff)} | {_mean(mae)} |")
    return "\n".join(lines) + "\n", summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["augmented", "estimators", "in-sample", "mhss"], default="augmented")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--noises", nargs="+", default=list(NOISES))
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the run store and the tables (a trial run: elsewhere)")
    args = ap.parse_args()
    use_results(args.results)
    base = read_yaml(REPO / "benchmarks" / "base.yaml")
    if not args.table_only:
        torch.set_num_threads(args.threads)
        for noise in args.noises:
            for seed in args.seeds:
                key = f"{args.part}|{noise}|{seed}"
                if key in load_runs(STORE)["runs"]:
                    continue
                print(f"{key}", flush=True)
                if args.part in ("augmented", "estimators", "in-sample"):
                    save_run(STORE, key, estimators(args.part, noise, seed, base, args.n_train, args.epochs, args.threads))
                else:
                    cfg = run_config(
                        base, "mhss-estimated", noise, seed, args.n_train, args.epochs, threads=args.threads, variants=VARIANTS
                    )
                    save_run(STORE, key, run_one(cfg, after=rate_scores))
    text, summary = table()
    (RESULTS / "noise_estimation.md").write_text(text)
    (RESULTS / "noise_estimation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
