"""A simulated inspector: what verified labels buy MHSS, suspects first against random, and how well a
verified random sample measures the noise rates.

    python benchmarks/review_loop.py                         # 3 seeds (about 7 runs a seed, 3 min each on one thread)
    python benchmarks/review_loop.py --seeds 0 --sizes 100 500

On digits-mosaic with complex noise 0.2, trained as users train (RandAugment views, rates estimated by the
method; `compare_methods.py --set user`'s `mhss`, at --epochs), per seed:

1. the unverified run: MHSS trained on the noisy labels, then audited (`apply/audit.py`);
2. for each size N, two review sheets (`apply/review_sheet.py`), their verdicts filled in from the clean
   labels (the inspector is always right), each then trained on through `noise.verified`:
   - `suspects`: the audit's first N suspects, most likely wrong first;
   - `random`: N / C random images with all their C classes (N entries);
   recorded: test mAP (mean of the last 3 epochs), the residual noise of the labels the networks learnt
   at the end, and how many labels the verdicts changed;
3. the MAE over classes of eps_c measured on a verified random sample of k images against the realised eps_c
   of the whole training split, over 200 draws per k (no training: the verdicts are the clean labels).

Runs are the real trainer, each stored when it ends in results/review_loop_runs.json (an interrupted run
continues); the table goes to results/review_loop.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
from functools import partial
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import load_runs, relative, save_run, write_result  # noqa: E402
from benchmarks.compare_methods import USER_VARIANTS, run_config, run_one  # noqa: E402
from mhss_ray.config import RunConfig, from_dict, read_yaml  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SAMPLE_IMAGES = (25, 50, 100, 200, 500)
DRAWS = 200


def fill_from_clean(sheet, clean: np.ndarray, class_names: list[str]):
    """The inspector: `correct` where the observed label is the clean one, else `wrong`."""
    truth = [int(clean[int(r), class_names.index(c)]) for r, c in zip(sheet["row"], sheet["class"])]
    sheet = sheet.copy()
    sheet["verdict"] = ["correct" if int(o) == t else "wrong" for o, t in zip(sheet["observed"], truth)]
    return sheet


def sample_mae(noisy: np.ndarray, clean: np.ndarray, seed: int) -> dict:
    """MAE of eps_c from k random images against the whole split's realised eps_c, per k: mean and 90th percentile."""
    wrong = noisy != clean
    realised = wrong.mean(0)
    rng = np.random.default_rng([seed, 77])
    out = {}
    for k in (k for k in SAMPLE_IMAGES if k < len(wrong)):
        maes = [float(np.abs(wrong[rng.choice(len(wrong), size=k, replace=False)].mean(0) - realised).mean()) for _ in range(DRAWS)]
        out[str(k)] = {"mae_mean": float(np.mean(maes)), "mae_p90": float(np.quantile(maes, 0.9))}
    return out


def write_sheets(trainer, seed: int, sizes: list[int], work: Path, sheets: dict) -> dict:
    """After the unverified run: its audit, and for each size a suspects sheet and a random sheet, filled in."""
    from mhss_ray.apply.audit import audit
    from mhss_ray.apply.review_sheet import review_sheet

    trainer.start_epoch = trainer.cfg.schedule.epochs  # the audit reads the forget rates of the last epoch
    table = audit(trainer)
    clean, names = trainer.noise.clean, trainer.data.class_names
    for n in sizes:
        for arm, sheet in (
            ("suspects", review_sheet(trainer, table.head(n), 0, seed)),
            ("random", review_sheet(trainer, table.head(0), n // len(names), seed)),
        ):
            if sheet.empty:  # the audit listed nothing: no round to run
                continue
            path = work / f"s{seed}_{arm}_{n}.csv"
            fill_from_clean(sheet, clean, names).to_csv(path, index=False)
            sheets[f"s{seed}_{arm}_{n}"] = path
    return {"suspects_listed": len(table), "eps_c_sample_mae": sample_mae(trainer.noise.labels, clean, seed)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500], help="verified entries per round")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=str(RESULTS / "review_loop_runs.json"))
    args = parser.parse_args(argv)
    store = Path(args.store)
    base = read_yaml(REPO / "benchmarks" / "base.yaml")
    work = Path(tempfile.mkdtemp(prefix="mhss-review-loop-"))

    def config(seed: int, verified: str | None = None):
        cfg = run_config(base, "mhss", "complex-0.2", seed, args.n_train, args.epochs, threads=args.threads, variants=USER_VARIANTS)
        if verified is None:
            return cfg
        data = cfg.to_dict()
        data["noise"]["verified"] = [verified]
        return from_dict(RunConfig, data)

    try:
        for seed in args.seeds:
            key = f"s{seed}_unverified"
            sheets: dict[str, Path] = {}
            done = load_runs(store)["runs"]
            missing = [k for k in (f"s{seed}_{arm}_{n}" for arm in ("suspects", "random") for n in args.sizes) if k not in done]
            if key in done and not missing:
                continue
            # the sheets come from the unverified run's audit: it runs again (the same seed, the same run) to write them
            print(f"seed {seed}: unverified", flush=True)
            result = run_one(config(seed), after=partial(write_sheets, seed=seed, sizes=args.sizes, work=work, sheets=sheets))
            save_run(store, key, result)
            for k in (k for k in missing if k in sheets):
                print(f"seed {seed}: {k}", flush=True)
                result = run_one(config(seed, str(sheets[k])), after=lambda trainer: {"review": trainer.review})
                save_run(store, k, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the filled-in sheets: made again by the audit on a rerun
    runs = load_runs(store)["runs"]
    summary, table = summarise(runs, args.seeds, args.sizes)
    print(table)
    write_result(
        RESULTS / "review_loop.json",
        {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "n_train": args.n_train, "epochs": args.epochs, **summary},
    )
    (RESULTS / "review_loop.md").write_text(table)
    print(f"wrote {relative(RESULTS / 'review_loop.md')}")
    return 0


def mean_sd(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def summarise(runs: dict, seeds: list[int], sizes: list[int]) -> tuple[dict, str]:
    done = [s for s in seeds if f"s{s}_unverified" in runs]
    rows, lines = {}, ["| run | seeds | test mAP (last 3) | lift over unverified | residual noise | labels changed |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name in ["unverified"] + [f"{arm}_{n}" for n in sizes for arm in ("suspects", "random")]:
        have = [s for s in done if f"s{s}_{name}" in runs]
        if not have:
            continue
        maps = [runs[f"s{s}_{name}"]["test_mAP_last3_mean"] for s in have]
        lifts = [runs[f"s{s}_{name}"]["test_mAP_last3_mean"] - runs[f"s{s}_unverified"]["test_mAP_last3_mean"] for s in have]
        residual = [runs[f"s{s}_{name}"].get("residual_noise") for s in have]
        changed = [runs[f"s{s}_{name}"].get("review", {}).get("labels_changed") for s in have]
        rows[name] = {"seeds": have, "test_mAP": maps, "lift": lifts, "residual_noise": residual, "labels_changed": changed}
        res = [r for r in residual if r is not None]
        ch = [c for c in changed if c is not None]
        lines.append(
            f"| {name} | {len(have)} | {mean_sd(maps)} | {'' if name == 'unverified' else mean_sd(lifts)} "
            f"| {mean_sd(res) if res else '-'} | {mean_sd(ch) if ch else '-'} |"
        )
    mae = {}
    for k in SAMPLE_IMAGES:
        values = [
            runs[f"s{s}_unverified"]["eps_c_sample_mae"][str(k)] for s in done if str(k) in runs[f"s{s}_unverified"]["eps_c_sample_mae"]
        ]
        if values:
            mae[k] = {key: statistics.fmean(v[key] for v in values) for key in ("mae_mean", "mae_p90")}
    lines += ["", "| random sample, images | eps_c MAE (mean of 200 draws) | 90th percentile |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v['mae_mean']:.4f} | {v['mae_p90']:.4f} |" for k, v in mae.items()]
    return {"seeds": done, "runs": rows, "eps_c_sample_mae": mae}, "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
