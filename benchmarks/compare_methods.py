"""Compare the methods on digits-mosaic under synthetic noise (CPU), and write the table.

    python benchmarks/compare_methods.py                    # everything: variants x noises x seeds
    python benchmarks/compare_methods.py --seeds 0          # one seed (resumable: done runs are kept)
    python benchmarks/compare_methods.py --table-only       # rebuild the table from the run store
    python benchmarks/compare_methods.py --set rev2 --n-train 1000 --epochs 30 --threads 1 --seeds 0 --results R0.json
                                                            # METHODS.md revision 2 (one process per seed, then --merge
                                                            # into results/methods_runs.json: methods.json rows, methods.md)

Every run is the real trainer (`Trainer.run`) on benchmarks/base.yaml with the sizes below; each finished
run is stored at once in benchmarks/results/methods.json, so an interrupted benchmark continues where
it stopped. Test mAP is reported as the mean of the last 3 epochs and at the best clean-val epoch;
selection figures are those of the last epoch (METHODS.md section 10).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mhss_ray.config import RunConfig, from_dict, read_yaml  # noqa: E402
from mhss_ray.methods.stats import SELECTION_KEYS  # noqa: E402
from mhss_ray.train.loop import Trainer  # noqa: E402
from mhss_ray.train.run_folder import summarise  # noqa: E402

VARIANTS = {  # the comparison the issue asks for: config sections each variant sets
    "asl-clean": {"method": {"name": "asl-clean"}},
    "asl": {"method": {"name": "asl"}},
    "coteaching": {"method": {"name": "coteaching", "granularity": "per_class"}},
    "coteaching-polarity": {"method": {"name": "coteaching", "granularity": "per_class_polarity"}},
    "coteaching-global": {"method": {"name": "coteaching", "granularity": "global"}},
    "coselfie": {"method": {"name": "coselfie", "granularity": "per_class"}},
    "disc": {"method": {"name": "disc"}},
    "mhss": {"method": {"name": "mhss", "granularity": "per_class"}},
    "mhss-cdnr-only": {"method": {"name": "mhss", "granularity": "per_class", "jcc": False}},
    "mhss-jcc-only": {"method": {"name": "mhss", "granularity": "per_class", "cdnr": False}},
}
BCE = {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}  # ASL with no focusing = binary cross-entropy
INVESTIGATIONS = {  # why CoSELFIE and MHSS fall below ASL here (see methods.md)
    "asl (BCE loss)": {"method": {"name": "asl"}, "loss": BCE},
    "coselfie (BCE loss)": {"method": {"name": "coselfie", "granularity": "per_class"}, "loss": BCE},
    "mhss (BCE loss)": {"method": {"name": "mhss", "granularity": "per_class"}, "loss": BCE},
    "mhss (warm-up 10)": {"method": {"name": "mhss", "granularity": "per_class", "warmup": 10}},
    "coselfie (BCE loss, warm-up 10)": {"method": {"name": "coselfie", "granularity": "per_class", "warmup": 10}, "loss": BCE},
    "mhss (BCE loss, warm-up 10)": {"method": {"name": "mhss", "granularity": "per_class", "warmup": 10}, "loss": BCE},
    "mhss (per-class polarity)": {"method": {"name": "mhss", "granularity": "per_class_polarity"}},
}
# Revision 2 of METHODS.md, the rows issue "refurbishment under ASL" asks for: ASL (the paper's loss),
# the shipped defaults (per-class-polarity selection, history threshold p*, refurbishing rejected
# entries only, warm-up max(q + ceil(E/10), ceil(E/3))).
REV2_VARIANTS = {
    "asl-clean": {"method": {"name": "asl-clean"}},
    "asl": {"method": {"name": "asl"}},
    "coteaching": {"method": {"name": "coteaching"}},
    "coselfie": {"method": {"name": "coselfie"}},
    "mhss": {"method": {"name": "mhss"}},
    "mhss-cdnr": {"method": {"name": "mhss", "jcc": False}},
    "mhss-jcc": {"method": {"name": "mhss", "cdnr": False}},
    "disc": {"method": {"name": "disc"}},
    # levers (not in the default run)
    "disc-noshift": {"method": {"name": "disc", "disc_shift": False}},
    "coteaching-column": {"method": {"name": "coteaching", "granularity": "per_class"}},
    "mhss-q10": {"method": {"name": "mhss", "q": 10, "theta": 0.5}},
    "mhss-rank": {"method": {"name": "mhss", "history_threshold": "rank"}},
    "mhss-split": {"method": {"name": "mhss", "polarity_rates": "split"}},
    "coteaching-split": {"method": {"name": "coteaching", "polarity_rates": "split"}},
    "mhss-budget": {"method": {"name": "mhss", "correction_budget": True}},
    "mhss-restart": {"method": {"name": "mhss", "restarts": 1}},
    "coselfie-restart": {"method": {"name": "coselfie", "restarts": 1}},
}
REV2_MAIN = ["asl-clean", "asl", "coteaching", "coselfie", "mhss", "mhss-cdnr", "mhss-jcc", "disc"]
# The user's setting (issue "win where users train"): every method trains on RandAugment views (the
# in-memory datasets' default now) and the rates come from the data, as no user has an oracle; the
# oracle rows measure what estimation costs. Revision 2's rows above were measured without
# augmentation: they pin data.randaugment: none and stay the reference (results/methods_runs.json).
ESTIMATED = {"noise_rate_source": "estimated"}
NO_AUGMENTATION = {"data": {"randaugment": "none"}}
USER_VARIANTS = {
    "asl-clean": {"method": {"name": "asl-clean"}},
    "asl": {"method": {"name": "asl"}},
    "coteaching": {"method": {"name": "coteaching", **ESTIMATED}},
    "coselfie": {"method": {"name": "coselfie", **ESTIMATED}},
    "mhss": {"method": {"name": "mhss", **ESTIMATED}},
    "disc": {"method": {"name": "disc"}},
    "coteaching-oracle": {"method": {"name": "coteaching"}},
    "mhss-oracle": {"method": {"name": "mhss"}},
    # where MHSS may still help: the same training without augmentation (not in the default run)
    "asl-unaugmented": {"method": {"name": "asl"}, **NO_AUGMENTATION},
    "mhss-unaugmented": {"method": {"name": "mhss", **ESTIMATED}, **NO_AUGMENTATION},
}
USER_MAIN = [v for v in USER_VARIANTS if not v.endswith("-unaugmented")]
ALL_VARIANTS = {**VARIANTS, **INVESTIGATIONS}
VARIANT_SETS = {"rev1": ALL_VARIANTS, "rev2": REV2_VARIANTS, "user": USER_VARIANTS}
UNAUGMENTED_SETS = ("rev1", "rev2")  # measured before the in-memory datasets were augmented
NOISES = {
    "naive-0.4": {"mode": "naive", "rate": 0.4},
    "complex-0.2": {"mode": "complex", "rate": 0.2},
}


def run_config(
    base: dict,
    variant: str,
    noise: str,
    seed: int,
    n_train: int,
    epochs: int,
    device: str = "cpu",
    threads: int | None = None,
    variants: dict | None = None,
    augment: bool | None = None,
) -> RunConfig:
    """`augment`: RandAugment on the training images (default: for the user's set only)."""
    data = json.loads(json.dumps(base))
    data["seed"] = seed
    data["data"]["n_train"] = n_train
    data["schedule"] = {"epochs": epochs}
    data["noise"] = dict(NOISES[noise])
    variant_set = variants or ALL_VARIANTS
    sections = json.loads(json.dumps(variant_set[variant]))
    if not (augment if augment is not None else variant_set is USER_VARIANTS):
        sections = {**sections, "data": {**sections.get("data", {}), **NO_AUGMENTATION["data"]}}
    for key, value in sections.items():  # section by section: a variant's data keys join the base's
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    # float32 everywhere (no bf16 autocast), so that CPU and GPU runs compute the same thing
    data["runtime"] = {"device": device, "amp": "off", "threads": threads}
    return from_dict(RunConfig, data)


def run_one(cfg: RunConfig, after=None) -> dict:
    """One run's figures; `after(trainer)`, if given, adds its own (measured on the trained run)."""
    history: list[dict] = []
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.run(lambda metrics, _ckpt: history.append(metrics), log=lambda line: print("   ", line, flush=True))
    summary = summarise(history, trainer.data.class_names)
    last = history[-1]
    return {
        "test_mAP_last3_mean": summary["test_mAP_last3_mean"],
        "test_mAP_at_best_val": summary["test_mAP_at_best_val"],
        "test_mAP_final": summary["test_mAP_final"],
        "noise_rate_mean": summary["noise_rate_mean"],
        **{k: last.get(k) for k in SELECTION_KEYS},
        "curve_test_mAP": [m["test_mAP"] for m in history],
        "curve_selection_precision": [m.get("selection_precision") for m in history],
        "curve_selection_recall": [m.get("selection_recall") for m in history],
        "seconds": time.perf_counter() - start,
        "augment": cfg.data.randaugment != "none",
        "noise_rate_source": cfg.method.noise_rate_source,
        **(after(trainer) if after is not None else {}),
    }


def _mean_std(values: list) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}"


def _mean_std_ratio(values: list) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
    return f"{np.mean(vals):.3f}" + (f" ± {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else "")


def _run_correction_precision(run: dict):
    """Precision of the run's corrections: of the labels that ended different from the observed ones, the
    share now right (the last epoch alone holds a handful of changes); runs recorded before this figure
    existed have none."""
    return run.get("labels_changed_precision")


def rows(results: dict) -> list[dict]:
    """One row per run, the columns the issue names (methods.json of revision 2)."""
    out = []
    for key, r in results["runs"].items():
        method, noise, seed = key.split("|")
        out.append({
            "method": method, "noise": noise, "seed": int(seed),
            "test_mAP_last3": r["test_mAP_last3_mean"], "test_mAP_best_val": r["test_mAP_at_best_val"],
            "selection_precision": r.get("selection_precision"), "correction_precision": _run_correction_precision(r),
            "residual_noise": r.get("residual_noise"), "observed_noise": r.get("noise_rate_mean"),
            "labels_changed": r.get("labels_changed"), "correction_precision_last_epoch": r.get("correction_precision"),
            "corrections_last_epoch": r.get("corrections"), "seconds": r.get("seconds"),
            # runs stored before these fields: revision 2's, unaugmented with the oracle's rates
            "augment": r.get("augment", False), "noise_rate_source": r.get("noise_rate_source", "oracle"),
        })  # fmt: skip
    return out


def table(results: dict, variants: dict | None = None) -> str:
    setup = results["setup"]
    defaults = (
        "α = 1, T_k = 10, q = 5, θ = 0.05, warm-up q (DISC 10); selection per class unless the row names another granularity"
        if variants in (None, ALL_VARIANTS)
        else "the user's setting: every method trains on RandAugment views (rand-m9-mstd0.5, translation at most 10%), noise rates "
        "estimated from the data by the likelihood fit (rows named -oracle: the oracle's), JCC where both networks agree: revision 3 "
        "as shipped (docs/methods.md); one CPU thread per run"
        if variants is USER_VARIANTS
        else "METHODS.md revision 2 as shipped: ASL (γ- 4, clip 0.05), α = 1, T_k = 10, oracle ε_c, per-class-polarity selection with "
        "per-class rates, q = 5, θ = 0.05, history threshold p*, refurbishing rejected entries only, warm-up max(q + ⌈E/10⌉, ⌈E/3⌉) = 10 "
        "(DISC 10, with the p* shift); one CPU thread per run"
    )
    lines = [
        "# Methods on digits-mosaic",
        "",
        f"Written by `benchmarks/compare_methods.py` on {setup.get('device', 'cpu')} ({setup['n_train']} training mosaics, 32 "
        "px, timm resnet18, "
        f"{setup['epochs']} epochs, batch {setup['batch_size']}, Adam + OneCycle at lr {setup['lr']:g}; method defaults: "
        f"{defaults}; float32). Mean ± std over the seeds run "
        "(column n). Test mAP: mean of the last 3 epochs and at the best clean-validation epoch. Selection figures: "
        "last epoch, over both networks' training entries. Labels changed: entries whose label at the end differs from the "
        "observed one, summed over both networks, and the share of them that are now right (the run's correction precision); "
        "residual noise: share of wrong entries at the end (observed: the noise rate).",
        "",
    ]
    for noise in NOISES:
        lines += [
            f"## Noise: {noise}",
            "",
            "| method | n | test mAP (last 3) | test mAP (best val) | sel. precision | sel. recall | labels changed (run) | "
            "their precision | residual noise |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for variant in variants or ALL_VARIANTS:
            runs = [r for k, r in results["runs"].items() if k.startswith(f"{variant}|{noise}|")]
            if not runs:
                continue

            def col(key, runs=runs):
                return [r.get(key) for r in runs]

            lines.append(
                f"| {variant} | {len(runs)} | {_mean_std(col('test_mAP_last3_mean'))} | {_mean_std(col('test_mAP_at_best_val'))} | "
                f"{_mean_std_ratio(col('selection_precision'))} | {_mean_std_ratio(col('selection_recall'))} | "
                f"{_mean_std(col('labels_changed'))} | {_mean_std_ratio(col('labels_changed_precision'))} | "
                f"{_mean_std_ratio(col('residual_noise'))} |"
            )
        lines.append("")
    if variants is USER_VARIANTS:
        lines += paired_differences(results)
    return "\n".join(lines)


PAIRS = [
    ("mhss", "asl"), ("mhss", "coteaching"), ("mhss", "coselfie"), ("disc", "asl"), ("mhss", "mhss-oracle"),
    ("coteaching", "asl"), ("mhss-oracle", "asl"), ("coteaching-oracle", "asl"), ("mhss-unaugmented", "asl-unaugmented"),
]  # fmt: skip


def paired_differences(results: dict) -> list[str]:
    """Per-seed differences of test mAP (last 3) between two methods on the same seeds, with a 95%
    interval from the paired t distribution (n - 1 degrees of freedom)."""
    from scipy import stats

    lines = ["## Paired differences (test mAP, last 3; same seeds)", "", "| noise | difference | seeds | mean | 95% interval |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for noise in NOISES:
        for a, b in PAIRS:
            seeds = sorted(
                {int(k.split("|")[2]) for k in results["runs"] if k.startswith(f"{a}|{noise}|")}
                & {int(k.split("|")[2]) for k in results["runs"] if k.startswith(f"{b}|{noise}|")}
            )
            if not seeds:
                continue
            d = np.array(
                [
                    results["runs"][f"{a}|{noise}|{s}"]["test_mAP_last3_mean"] - results["runs"][f"{b}|{noise}|{s}"]["test_mAP_last3_mean"]
                    for s in seeds
                ]
            )
            if len(d) > 1:
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
                interval = f"[{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"
            else:
                interval = "- (one seed)"
            lines.append(f"| {noise} | {a} − {b} | {len(d)} | {d.mean():+.2f} | {interval} |")
    return lines + [""]


def write_methods_json(folder: Path) -> None:
    """methods.json: one row per run of both comparisons, revision 2's (no augmentation, the oracle's rates)
    and the user's setting (augmentation, estimated rates), told apart by `augment` and `noise_rate_source`."""
    out = []
    for store, setting in (("methods_runs.json", "revision 2"), ("methods_user_runs.json", "user")):
        if (folder / store).exists():
            out += [{**row, "setting": setting} for row in rows(json.loads((folder / store).read_text()))]
    _write_atomic(folder / "methods.json", json.dumps(out, indent=1) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--set",
        dest="variant_set",
        choices=list(VARIANT_SETS),
        default="rev1",
        help="rev2: METHODS.md revision 2's rows (ASL, shipped defaults)",
    )
    parser.add_argument("--variants", nargs="+", default=None, help="default: the set's main comparison (rev1: without the investigations)")
    parser.add_argument("--noises", nargs="+", default=list(NOISES), choices=list(NOISES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "methods.json"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (several benchmark processes on one machine)")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="JSON",
        help="add the runs of these result files (same setup) to --results, then write the table",
    )
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    variants = VARIANT_SETS[args.variant_set]
    args.variants = args.variants or list({"rev1": VARIANTS, "rev2": REV2_MAIN, "user": USER_MAIN}[args.variant_set])
    unknown = [v for v in args.variants if v not in variants]
    if unknown:
        parser.error(f"--variants: {unknown[0]} is not a variant of --set {args.variant_set} ({', '.join(variants)})")

    base = read_yaml(REPO / "benchmarks" / "base.yaml")
    base_cfg = from_dict(RunConfig, base)
    path = Path(args.results)
    setup = {
        "n_train": args.n_train,
        "epochs": args.epochs,
        "batch_size": base_cfg.data.batch_size,
        "lr": base_cfg.optim.lr,
        "device": args.device,
    }
    results = json.loads(path.read_text()) if path.exists() else {"setup": setup, "runs": {}}
    results["setup"].setdefault("device", "cpu")
    for other in args.merge:
        extra = json.loads(Path(other).read_text())
        if extra["setup"] != results["setup"]:
            print(f"{other} holds runs of another setup {extra['setup']}", file=sys.stderr)
            return 2
        results["runs"].update(extra["runs"])
    if args.merge:
        _write_atomic(path, json.dumps(results, indent=1) + "\n")
    elif results["setup"] != setup and not args.table_only:
        print(f"{path} holds runs of another setup {results['setup']}; move it away first", file=sys.stderr)
        return 2
    if not args.table_only and not args.merge:
        for seed in args.seeds:  # seed-major: a partial benchmark still covers every method
            for noise in args.noises:
                for variant in args.variants:
                    key = f"{variant}|{noise}|{seed}"
                    if key in results["runs"]:
                        continue
                    print(f"== {key}", flush=True)
                    results["runs"][key] = run_one(
                        run_config(base, variant, noise, seed, args.n_train, args.epochs, args.device, args.threads, variants)
                    )
                    r = results["runs"][key]
                    print(
                        f"   -> test mAP last3 {r['test_mAP_last3_mean']:.2f}, best-val {r['test_mAP_at_best_val']:.2f}, "
                        f"{r['seconds']:.0f} s",
                        flush=True,
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _write_atomic(path, json.dumps(results, indent=1) + "\n")
    md = table(results, variants)
    _write_atomic(path.with_suffix(".md"), md + "\n")
    if args.variant_set == "user" and path.name == "methods_user_runs.json":  # the user's setting, beside revision 2's
        _write_atomic(path.with_name("methods_user.json"), json.dumps(rows(results), indent=1) + "\n")
        write_methods_json(path.parent)
    if args.variant_set == "rev2" and path.name == "methods_runs.json":  # the flat rows and table of the comparison, beside its run store
        write_methods_json(path.parent)
        _write_atomic(path.with_name("methods.md"), md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
