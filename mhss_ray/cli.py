"""Command-line entry points. Thin: parse, call, report; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from pathlib import Path

from .errors import TrainingDiverged, UserError


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that every `finally` removes what it was writing."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _run_cli(prog: str, body, argv, clean_on_sigterm: bool = False) -> int:
    if clean_on_sigterm:  # the commands that write through temporary files (mhss-analyze, -audit, -predict)
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return body(argv) or 0
    except Terminated:
        print(f"{prog}: terminated; nothing half-written was left", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (UserError, TrainingDiverged) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        from .disk_space import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"{prog}: error: {where}no space left on its disk; free some space and run the command again (--resume continues)",
            file=sys.stderr,
        )
        return 2
    finally:
        # the interpreter's last garbage collection walks every object torch, Ray and pandas made: seconds
        # at every exit. Frozen, they are skipped; atexit handlers (Ray's shutdown) and stream flushes still run
        gc.freeze()


def _train(argv) -> int:
    parser = argparse.ArgumentParser(prog="mhss-train", description="Train one configuration in-process (no Ray).")
    parser.add_argument("--config", help="run config YAML (a search-space file's base config works too)")
    parser.add_argument("--out", help="output folder (default: runs/<config name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. method.name=asl-clean",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument("--list", action="store_true", help="print the registered methods and datasets (with their config keys) and exit")
    args = parser.parse_args(argv)
    if args.list:
        from .registry import describe

        print(describe())
        return 0

    # Heavy imports after argument parsing, so --help and usage errors are instant; timm's (seconds) after the config
    from .config import load_run_config
    from .data.decode_cache import AUTO, default_cache_dir
    from .disk_space import check_room, checkpoint_bytes
    from .outputs import check_writable
    from .train.run_folder import RunFolder

    if args.resume:
        if not args.out:
            raise UserError("--resume needs --out, the folder of the run to continue")
        if args.config or args.overrides:
            raise UserError("--resume continues a run with the config saved in its folder; drop --config and --set")
        folder, cache_was_there = RunFolder(args.out), True
        cfg, state = folder.open_for_resume()
        from .train.loop import Trainer

        trainer = Trainer(cfg)
        check_room(folder.path, 2 * checkpoint_bytes(cfg), "--out", "this run's checkpoint (twice, while one replaces the other)")
        if state is None:
            print(f"resuming {folder.path}: it stopped before its first checkpoint, starting at epoch 1", flush=True)
        else:
            trainer.load_state_dict(state)
            print(f"resuming {folder.path} after epoch {state['epoch']}", flush=True)
    else:
        if not args.config:
            raise UserError("--config FILE is required (e.g. --config search_spaces/demo.yaml)")
        cfg = load_run_config(args.config, args.overrides)
        folder = RunFolder(args.out or Path("runs") / Path(args.config).stem)
        if cfg.data.cache_dir == AUTO:
            cfg.data.cache_dir = default_cache_dir(folder.path, cfg.data.root)
        from .train.loop import Trainer

        trainer = Trainer(cfg)  # every input is checked here, before the folder is touched
        check_writable(folder.path, "--out")
        check_room(folder.path, 2 * checkpoint_bytes(cfg), "--out", "this run's checkpoint (twice, while one replaces the other)")
        cache_was_there = bool(cfg.data.cache_dir) and Path(str(cfg.data.cache_dir)).expanduser().exists()
        out_was_there = folder.path.exists()
        folder.create(cfg, overwrite=args.overwrite, config_file=args.config)
    try:
        trainer.run(folder.report, log=lambda line: print(line, flush=True))
    except UserError:
        # found only while training (an image that does not decode, a plugin's wrong answer) before a new run
        # recorded an epoch: leave nothing half-written, the decode cache this run started included
        if not args.resume and not folder.metrics_file.exists():
            folder.discard(not out_was_there, None if cache_was_there else cfg.data.cache_dir)
        raise
    summary = folder.write_summary(cfg, trainer.data.class_names, trainer.review)
    print(
        f"done: test mAP {summary['test_mAP_final']:.2f} (last-3 mean {summary['test_mAP_last3_mean']:.2f}, "
        f"at best val {summary['test_mAP_at_best_val']:.2f}); wrote {folder.path}/metrics.jsonl, summary.md, checkpoint/",
        flush=True,
    )
    return 0


def train_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-train", _train, argv))


def tune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mhss-tune", description="Hyperparameter study of a search-space file on Ray Tune.")
    parser.add_argument("--space", required=True, help="search-space YAML: base run config + search: + tune:")
    parser.add_argument("--storage", help="where the study's results go (overrides tune.storage_path)")
    parser.add_argument("--name", help="study name (overrides tune.name; default: the space file's name)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a base-config or tune.* key"
    )
    parser.add_argument("--address", help="Ray cluster to join (e.g. auto); default: start a local one")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted study of this name (unpickles Tune state: trusted folders only)"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete a finished or interrupted study of this name and start over")
    parser.add_argument(
        "--resume-or-start",
        action="store_true",
        help="--resume if the storage holds this study, else start it: for a job that may be rerun (KubeRay backoffLimit)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the expanded space, trial count and resources; start nothing")
    parser.add_argument(
        "--shared-storage",
        action="store_true",
        help="with --address: the storage folder is one that every node sees (an NFS mount, or a one-machine cluster)",
    )
    return parser


def _tune(argv) -> int:
    args = tune_parser().parse_args(argv)
    chosen = [
        f for f, on in (("--resume", args.resume), ("--overwrite", args.overwrite), ("--resume-or-start", args.resume_or_start)) if on
    ]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)} contradict each other; pick one")

    from .outputs import check_writable
    from .tune.console import quiet_ray_env
    from .tune.space import check_name, load_space

    quiet_ray_env(local_cluster=args.address is None)  # before Ray is imported: it reads them then
    if args.name is not None:
        check_name(args.name, "--name")
    if args.storage and "://" not in args.storage:
        check_writable(args.storage, "--storage")
    overrides = list(args.overrides)
    if args.storage:
        overrides.append(f"tune.storage_path={args.storage}")
    if args.name:
        overrides.append(f"tune.name={args.name}")
    spec = load_space(args.space, overrides, plan_only=args.dry_run)
    print(spec.describe(), flush=True)
    if args.dry_run:
        return 0
    from .tune.cluster import study_path
    from .disk_space import disk_full_line
    from .tune.study import StorageFull, best_table, run_study

    resume = "if-exists" if args.resume_or_start else args.resume
    try:
        run = run_study(spec, address=args.address, resume=resume, overwrite=args.overwrite, shared_storage=args.shared_storage)
    except StorageFull as full:
        raise UserError(disk_full_line("--storage", full.folder, full.need, resume_command(argv))) from None
    if run.note:
        print(f"note: {run.note}", flush=True)
    results = run.results
    errors = sum(1 for r in results if r.error)
    print(f"\nbest trials by {spec.tune.metric} ({spec.tune.mode}):\n{best_table(results, spec)}")
    print(f"{len(results)} trials, {errors} errored; results in {study_path(spec)}")
    if run.interrupted:
        print(f"interrupted; the study's state is saved. Continue it with:\n  {resume_command(argv)}", flush=True)
        return 130
    print(f"tables, plots and the best config: mhss-analyze {study_path(spec)}")
    return 1 if errors == len(results) else 0


def resume_command(argv) -> str:
    """The mhss-tune command line that continues this study: the same flags, --resume instead of
    --overwrite / --resume-or-start / --dry-run."""
    import shlex

    dropped = {"--overwrite", "--resume-or-start", "--resume", "--dry-run"}
    kept = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in dropped]
    return shlex.join(["mhss-tune", *kept, "--resume"])


def tune_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-tune", _tune, argv))


def _analyze(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="mhss-analyze",
        description="Tables (Parquet), plots and a summary of one or more finished or interrupted studies; starts no Ray.",
    )
    parser.add_argument(
        "studies", nargs="+", metavar="STUDY", help="study folder: storage_path/<name> (a local path, NFS, s3://... or gs://...)"
    )
    parser.add_argument(
        "--out",
        help="output folder (default: runs/analysis/<study names>); an earlier analysis there is replaced, any other folder refused",
    )
    parser.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="also write every study into this Optuna storage (e.g. sqlite:///studies.db) for optuna-dashboard; "
        "a study name already there is refused",
    )
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from .analysis.load import load_studies
    from .analysis.report import check_output, write_report

    if args.out:
        check_output(Path(args.out), args.studies)
    tables = load_studies(args.studies)
    out = Path(args.out) if args.out else Path("runs") / "analysis" / "+".join(tables.info)
    if not args.out:
        check_output(out, args.studies)
    if args.optuna_storage:
        from .analysis.optuna_export import check_export

        check_export(tables, args.optuna_storage)
    files = write_report(tables, out)
    counts = tables.trials["outcome"].value_counts()
    print(
        f"{len(tables.trials)} trials ({', '.join(f'{n} {o}' for o, n in counts.items())}), {len(tables.epochs)} trial-epochs "
        f"from {len(tables.info)} studies"
    )
    print(f"wrote {out}: " + ", ".join(f.name for f in files))
    if args.optuna_storage:
        from .analysis.optuna_export import export

        names = export(tables, args.optuna_storage)
        print(f"wrote {len(names)} Optuna {'study' if len(names) == 1 else 'studies'} ({', '.join(names)}) into {args.optuna_storage}; "
              f"browse them with: optuna-dashboard {args.optuna_storage}")  # fmt: skip
    return 0


def analyze_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-analyze", _analyze, argv, clean_on_sigterm=True))


def _audit(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="mhss-audit",
        description="The training entries a trained run corrected or deems unreliable: the labels to re-check, most confident first.",
    )
    parser.add_argument("--from", dest="source", required=True, help="an mhss-train run folder, or a study folder (local or s3://...)")
    parser.add_argument("--trial", default="best", help="with a study: best (by the study's metric; the default) or a trial id")
    parser.add_argument("--out", help="the table to write: FILE.parquet or FILE.csv (never an existing file)")
    parser.add_argument(
        "--review",
        help="a review sheet to write, FILE.csv: the suspects first, most likely wrong first, each with a verdict to fill in "
        "(correct / wrong / unsure); train on it with noise.verified",
    )
    parser.add_argument(
        "--sample", type=int, default=0, help="with --review: N images drawn at random, all their classes (the unbiased rates)"
    )
    args = parser.parse_args(argv)

    from .apply.audit import audit, known_precision
    from .apply.locate import locate
    from .outputs import check_new_table, write_table

    if not args.out and not args.review:
        raise UserError("mhss-audit: give --out FILE (the table) or --review FILE.csv (a sheet to fill in), or both")
    if args.sample and not args.review:
        raise UserError("--sample: only with --review (it adds random images to the review sheet)")
    out = check_new_table(args.out, "--out") if args.out else None
    sheet_out = check_new_table(args.review, "--review", (".csv",)) if args.review else None  # any spreadsheet opens it
    run = locate(args.source, args.trial)
    trainer = run.trainer()
    table = audit(trainer)
    if out is not None:
        write_table(table, out)
    n_corrected = int(table["corrected"].sum()) if len(table) else 0
    print(
        f"{run.source}: {len(table)} suspected label errors ({n_corrected} corrected by {run.config.method.name}, "
        f"{len(table) - n_corrected} deemed unreliable) of {trainer.observed.numel()} training entries"
        + (f"; wrote {out}" if out is not None else "")
    )
    checked = known_precision(trainer, table)
    if checked is not None:
        where = "the verified subset" if run.config.noise.mode == "real" else "the injected noise"
        print(f"against {where}: {checked[1]:.1%} of the {checked[0]} listed entries whose clean label is known are label errors")
    if sheet_out is not None:
        from .apply.review_sheet import review_sheet

        sheet = review_sheet(trainer, table, args.sample, run.config.seed)
        write_table(sheet, sheet_out)
        print(
            f"review sheet: {int((sheet['suspect'] == 'yes').sum())} suspects and {args.sample} random images "
            f"({int((sheet['random_sample'] == 'yes').sum())} entries); wrote {sheet_out}: fill in its verdict column "
            "(correct / wrong / unsure), then train with noise.verified: [that file]"
        )
    return 0


def audit_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-audit", _audit, argv, clean_on_sigterm=True))


def _predict(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="mhss-predict",
        description="Per image and class: the probability and the decision of a trained run's first network (thresholds from validation).",
    )
    parser.add_argument("--from", dest="source", required=True, help="an mhss-train run folder, or a study folder (local or s3://...)")
    parser.add_argument("--trial", default="best", help="with a study: best (by the study's metric; the default) or a trial id")
    parser.add_argument(
        "--images", required=True, help="train, val or test (the run's own split), a folder of images, or a manifest .csv/.parquet"
    )
    parser.add_argument("--out", required=True, help="the table to write: FILE.parquet or FILE.csv (never an existing file)")
    args = parser.parse_args(argv)

    from .apply.locate import locate
    from .apply.predict import beside, images_to_predict, metrics_table, predict, prediction_table, thresholds_table
    from .outputs import check_new_table, write_table

    out = check_new_table(args.out, "--out")
    thresholds_out = check_new_table(beside(out, "thresholds"), "--out (its thresholds file)")
    run = locate(args.source, args.trial)
    evaluator = run.evaluator()
    dataset, names, labels = images_to_predict(evaluator, args.images)
    metrics_out = check_new_table(beside(out, "metrics"), "--out (its metrics file)") if labels is not None else None
    probs, rows = predict(evaluator, dataset, log=lambda line: print(line, file=sys.stderr, flush=True))
    thresholds = evaluator.chosen_thresholds()
    classes = evaluator.data.class_names
    table = prediction_table(names, rows, probs, thresholds, classes)
    write_table(thresholds_table(thresholds, classes), thresholds_out)
    written = [str(out), thresholds_out.name]
    if metrics_out is not None:  # a split of the run's own dataset: its labels are known
        metrics = metrics_table(probs, labels[rows], thresholds, classes)
        write_table(metrics, metrics_out)
        written.append(metrics_out.name)
    write_table(table, out)
    positives = int(table[[f"pred_{c}" for c in classes]].to_numpy().sum())
    print(
        f"{run.source}: {len(table)} images predicted ({positives} positive decisions over {evaluator.data.num_classes} classes); "
        f"wrote {', '.join(written)}"
    )
    if metrics_out is not None:
        mean = metrics.iloc[-1]
        print(
            f"against the split's labels: mAP {mean['AP']:.2f}, mean F1 {mean['F1']:.3f} at the thresholds (per class: {metrics_out.name})"
        )
    return 0


def predict_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-predict", _predict, argv, clean_on_sigterm=True))


def _pretrain(argv) -> int:
    from .pretrain.spec import PretrainSpec  # light: no torch before the arguments are checked

    d = PretrainSpec()
    parser = argparse.ArgumentParser(
        prog="mhss-pretrain",
        description="A pretrained start without a hub: train a timm network on formula-driven images (random Bezier glyphs) and write "
        "a file that model.pretrained_path loads. Deterministic and cached: the same arguments find the same file.",
    )
    parser.add_argument("--model", default=d.model, help="timm model name (default %(default)s)")
    parser.add_argument("--image-size", type=int, default=d.image_size, help="px, the size the runs train at (default %(default)s)")
    parser.add_argument(
        "--in-chans", type=int, default=d.in_chans, choices=[1, 3], help="channels of the runs' images (default %(default)s)"
    )
    parser.add_argument("--categories", type=int, default=d.categories, help="glyph categories (default %(default)s)")
    parser.add_argument("--images", type=int, default=d.images, help="training images (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="runs/pretrained", help="the folder of the weights files (default %(default)s)")
    args = parser.parse_args(argv)
    for key in ("image_size", "categories", "images", "epochs"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key.replace('_', '-')}: {getattr(args, key)} must be at least 1")
    spec = PretrainSpec(
        args.model, args.image_size, args.in_chans, args.categories, args.images, args.epochs, d.batch_size, d.lr, args.seed
    )
    if spec.images < spec.batch_size:
        raise UserError(f"--images: {spec.images} is fewer than one batch of {spec.batch_size}")
    from .outputs import check_writable
    from .pretrain.command import pretrain

    check_writable(Path(args.out), "--out")
    path = pretrain(spec, args.out, threads=args.threads, log=lambda line: print(line, flush=True))
    print(f"use it with: --set model.name={spec.model} --set model.pretrained_path={path}")
    return 0


def pretrain_main(argv=None) -> int:
    sys.exit(_run_cli("mhss-pretrain", _pretrain, argv))


if __name__ == "__main__":
    train_main()
