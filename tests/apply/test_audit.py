"""mhss-audit on a real trained run and on a study's trials: the list of suspected label errors."""

import json

import pandas as pd
import pytest
import torch
import yaml

from mhss_ray.cli import audit_main, train_main
from mhss_ray.train.loop import Trainer
from tests.conftest import REPO, TINY, tiny_config

MHSS = {"method": {"name": "mhss", "q": 2, "warmup": 2, "t_k": 1}, "noise": {"mode": "complex", "rate": 0.3}, "schedule": {"epochs": 8}}


@pytest.fixture(scope="module")
def mhss_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    config = folder / "mhss.yaml"
    data = {**TINY, **{k: {**TINY.get(k, {}), **v} for k, v in MHSS.items()}}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(config), "--out", str(folder / "run")])
    assert exit_.value.code == 0
    return folder / "run"


def run_audit(*args) -> int:
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(a) for a in args])
    return exit_.value.code


def test_audit_lists_the_corrections_and_the_rejected_entries_most_confident_first(mhss_run, tmp_path, capsys):
    assert run_audit("--from", mhss_run, "--out", tmp_path / "errors.parquet") == 0
    printed = capsys.readouterr().out
    assert "suspected label errors" in printed
    table = pd.read_parquet(tmp_path / "errors.parquet")
    assert list(table.columns) == [
        "image", "row", "class", "observed", "proposed", "corrected", "rejected", "networks_agree", "certainty", "confidence",
        "loss_quantile", "reason",
    ]  # fmt: skip
    assert len(table) > 0 and table["corrected"].any()
    assert (table["proposed"] != table["observed"]).all()
    assert table["confidence"].is_monotonic_decreasing
    assert table["loss_quantile"].between(0, 1).all() and table["certainty"].between(0, 1).all()
    # why each entry is listed: a correction the networks doubt (p < 0.5 for the proposed label) says so
    doubted = table["corrected"] & (table["confidence"] < 0.5)
    assert (table.loc[doubted, "reason"].str.contains("now lean to the observed label")).all()
    assert (table.loc[table["corrected"] & ~doubted, "reason"] == "corrected by the method; the networks agree").all()
    assert table["image"].isna().all()  # digits-mosaic is in memory: the row names the image
    # against the injected noise: the list is far more often right than a random pick (which scores the noise rate)
    trainer = Trainer(tiny_config(**MHSS))
    noise = torch.from_numpy(trainer.noise.mask)
    classes = trainer.data.class_names
    hits = [bool(noise[r, classes.index(c)]) for r, c in zip(table["row"], table["class"])]
    assert sum(hits) / len(hits) > 2 * float(noise.float().mean()), (sum(hits) / len(hits), float(noise.float().mean()))
    assert f"against the injected noise: {sum(hits) / len(hits):.1%} of the {len(hits)} listed entries" in printed
    # the same table as CSV
    assert run_audit("--from", mhss_run, "--out", tmp_path / "errors.csv") == 0
    csv = pd.read_csv(tmp_path / "errors.csv", dtype={"class": str})
    assert csv["row"].tolist() == table["row"].tolist() and csv["class"].tolist() == table["class"].tolist()


def test_audit_refuses_bad_input_in_one_line(mhss_run, tmp_path, capsys):
    existing = tmp_path / "mine.csv"
    existing.write_text("keep me\n")
    cases = [
        (["--from", mhss_run, "--out", existing], "exists; choose another file"),
        (["--from", mhss_run, "--out", tmp_path / "errors.txt"], "expected a file name ending in .parquet or .csv"),
        (["--from", tmp_path / "nowhere", "--out", tmp_path / "a.csv"], "no such folder"),
        (["--from", mhss_run, "--trial", "abc", "--out", tmp_path / "b.csv"], "is a run folder, not a study"),
    ]
    for args, words in cases:
        assert run_audit(*args) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert existing.read_text() == "keep me\n"
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


@pytest.mark.slow
def test_audit_of_a_study_reads_its_best_trial_or_a_named_one(demo_study, tmp_path, capsys):
    storage = demo_study[0]
    study = next(p for p in storage.iterdir() if p.is_dir())
    assert run_audit("--from", study, "--out", tmp_path / "best.csv") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{study} trial ")
    trial = out.split(" trial ")[1].split(":")[0]
    assert run_audit("--from", study, "--trial", trial, "--out", tmp_path / "named.csv") == 0
    assert (tmp_path / "best.csv").read_text() == (tmp_path / "named.csv").read_text()
    assert run_audit("--from", study, "--trial", "nosuch", "--out", tmp_path / "none.csv") == 2
    assert "--trial nosuch: no such trial" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_from_a_study_uses_the_best_trials_best_checkpoint(demo_study, tmp_path, capsys):
    from mhss_ray.analysis.load import best_trials, load_study
    from mhss_ray.cli import predict_main

    storage = demo_study[0]
    study = next(p for p in storage.iterdir() if p.is_dir())
    tables = load_study(str(study))
    best = best_trials(tables, top=1).iloc[0]
    assert isinstance(best["best_checkpoint"], str)  # kept beside the latest
    with pytest.raises(SystemExit) as exit_:
        predict_main(["--from", str(study), "--images", "test", "--out", str(tmp_path / "p.parquet")])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"{study} trial {best['trial_id']}: ")
    table = pd.read_parquet(tmp_path / "p.parquet")
    # the probabilities are those of the best epoch: they give the test mAP recorded there, not the last epoch's
    from mhss_ray.apply.locate import locate
    from mhss_ray.train.metrics import mean_average_precision

    run = locate(str(study))
    assert run.state["epoch"] == int(best["best_epoch"])
    labels = run.trainer().data.test.labels
    rows = tables.epochs[(tables.epochs["trial_id"] == best["trial_id"]) & (tables.epochs["epoch"] == best["best_epoch"])]
    probs = table.filter(like="p_").to_numpy()
    assert mean_average_precision(probs, labels) == pytest.approx(float(rows["test_mAP"].iloc[0]), abs=1e-4)


def test_audit_of_real_noise_reports_its_precision_on_the_verified_subset(tmp_path, capsys):
    from mhss_ray.data import fixtures

    written = fixtures.write_sewerml(tmp_path / "sewer", n_train=30, n_val=10)
    names, labels = written["Train"]
    (tmp_path / "sewer" / "verified.csv").write_text(fixtures.sewer_csv(names[:12], labels[:12]))
    sets = [
        "data.name=sewerml", f"data.root={tmp_path / 'sewer'}", "data.image_size=32", "data.batch_size=8", "noise.mode=real",
        "noise.clean_subset=verified.csv", "method.name=coteaching", "method.noise_rate_source=estimated", "schedule.epochs=2",
        "runtime.device=cpu",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        train_main(
            ["--config", str(REPO / "benchmarks" / "base.yaml"), "--out", str(tmp_path / "run"), *(a for x in sets for a in ("--set", x))]
        )
    assert exit_.value.code == 0
    capsys.readouterr()
    assert run_audit("--from", tmp_path / "run", "--out", tmp_path / "errors.csv") == 0
    printed = capsys.readouterr().out
    from mhss_ray.apply.audit import known_precision
    from mhss_ray.apply.locate import locate

    table = pd.read_csv(tmp_path / "errors.csv", dtype={"class": str})
    trainer = locate(str(tmp_path / "run")).trainer()
    assert int((trainer.clean != 255).all(1).sum()) > 0  # some training rows are verified
    checked = known_precision(trainer, table)
    if checked is None:  # no listed entry falls on a verified row: nothing to report
        assert "against the verified subset" not in printed
    else:
        assert f"against the verified subset: {checked[1]:.1%} of the {checked[0]} listed entries" in printed

    # a review sheet of a dataset read from files names each image relative to the dataset folder, so it
    # still fits after the folder moves (to another disk or machine)
    assert run_audit("--from", tmp_path / "run", "--review", tmp_path / "sheet.csv", "--sample", 3) == 0
    sheet = pd.read_csv(tmp_path / "sheet.csv", dtype=str, keep_default_na=False)
    assert set(sheet["image"]) <= set(names) and str(tmp_path) not in sheet.to_csv()
    sheet.assign(verdict="wrong").to_csv(tmp_path / "filled.csv", index=False)
    (tmp_path / "sewer").rename(tmp_path / "moved")
    moved = [x.replace(str(tmp_path / "sewer"), str(tmp_path / "moved")) for x in sets]
    moved += ["schedule.epochs=1", f"noise.verified=[{tmp_path / 'filled.csv'}]"]
    with pytest.raises(SystemExit) as exit_:
        train_main(
            [
                "--config",
                str(REPO / "benchmarks" / "base.yaml"),
                "--out",
                str(tmp_path / "again"),
                *(a for x in moved for a in ("--set", x)),
            ]
        )
    assert exit_.value.code == 0
    review = json.loads((tmp_path / "again" / "summary.json").read_text())["review"]
    assert review["verified_entries"] == len(sheet)
