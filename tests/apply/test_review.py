"""The review loop through the commands a user types: mhss-audit --review writes a sheet, an inspector fills in
its verdicts (here from the clean labels of the injected noise), mhss-train trains on them (noise.verified)."""

import json

import pandas as pd
import pytest
import torch
import yaml

from mhss_ray.cli import audit_main, predict_main, train_main
from mhss_ray.train.loop import Trainer
from tests.conftest import TINY, tiny_config

MHSS = {"method": {"name": "mhss", "q": 2, "warmup": 2, "t_k": 1}, "noise": {"mode": "complex", "rate": 0.3}, "schedule": {"epochs": 4}}
SAMPLE = 12


def config_file(folder, **sections) -> str:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for changes in (MHSS, sections):
        for key, value in changes.items():
            data.setdefault(key, {}).update(value)
    path = folder / f"run{len(list(folder.glob('run*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def exit_code(main, *args) -> int:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    return exit_.value.code


@pytest.fixture(scope="module")
def sheet(tmp_path_factory):
    """A trained MHSS run's review sheet with a random sample, its verdicts filled in from the clean labels."""
    folder = tmp_path_factory.mktemp("review")
    assert exit_code(train_main, "--config", config_file(folder), "--out", folder / "run") == 0
    assert exit_code(audit_main, "--from", folder / "run", "--review", folder / "sheet.csv", "--sample", SAMPLE) == 0
    table = pd.read_csv(folder / "sheet.csv", dtype=str, keep_default_na=False)
    trainer = Trainer(tiny_config(**MHSS))  # the same labels and noise: the inspector knows the truth
    classes = trainer.data.class_names
    clean, observed = trainer.noise.clean, trainer.noise.labels
    truth = [int(clean[int(r), classes.index(c)]) for r, c in zip(table["row"], table["class"])]
    table["verdict"] = ["correct" if int(o) == t else "wrong" for o, t in zip(table["observed"], truth)]
    filled = folder / "filled.csv"
    table.to_csv(filled, index=False)
    return folder, table, filled, clean, observed, classes


def test_the_sheet_lists_the_suspects_first_then_the_random_images_whole(sheet):
    _, table, _, _, observed, classes = sheet
    assert list(table.columns) == [
        "dataset", "split", "image", "row", "class", "observed", "proposed", "suspect", "suspect_rank", "random_sample",
        "confidence", "verdict",
    ]  # fmt: skip
    suspects = table[table["suspect"] == "yes"]
    assert len(suspects) > 0
    assert suspects.index.tolist() == list(range(len(suspects)))  # first, in the audit's order
    assert suspects["suspect_rank"].astype(int).tolist() == list(range(1, len(suspects) + 1))
    sampled = table[table["random_sample"] == "yes"]
    assert sampled["row"].nunique() == SAMPLE
    for _, rows in sampled.groupby("row"):  # every class of a sampled image, each entry once
        assert sorted(rows["class"]) == sorted(classes)
    assert not table.duplicated(["row", "class"]).any()
    assert (table["observed"].astype(int) == [observed[int(r), classes.index(c)] for r, c in zip(table["row"], table["class"])]).all()


def test_training_on_the_verdicts_uses_them_and_measures_the_noise_and_the_audit(sheet, capsys):
    folder, table, filled, clean, observed, classes = sheet
    capsys.readouterr()
    config = config_file(folder, noise={"verified": [str(filled)]}, method={"noise_rate_source": "verified"})
    assert exit_code(train_main, "--config", config, "--out", folder / "verified") == 0
    printed = capsys.readouterr().out
    summary = json.loads((folder / "verified" / "summary.json").read_text())
    review = summary["review"]
    wrong = table["verdict"] == "wrong"
    assert review["verified_entries"] == len(table) and review["labels_changed"] == int(wrong.sum())
    suspects = table["suspect"] == "yes"
    assert review["audit_precision"]["suspects_checked"] == int(suspects.sum())
    assert review["audit_precision"]["precision"] == pytest.approx(float(wrong[suspects].mean()))
    sampled = table[table["random_sample"] == "yes"]
    for c in classes:  # eps_c as the sample's share of wrong labels, inside its interval
        rows = sampled[sampled["class"] == c]
        e = review["sample_rates"][c]
        assert e["eps"] == pytest.approx(float((rows["verdict"] == "wrong").mean()))
        assert e["low"] <= e["eps"] <= e["high"]
    assert f"noise measured on {SAMPLE} randomly sampled images" in printed
    assert "The audit's suspects as reviewed" in (folder / "verified" / "summary.md").read_text()

    # every verified entry learnt its verified label, and no network refurbished it
    from mhss_ray.apply.locate import locate

    trainer = locate(str(folder / "verified")).trainer()
    rows = torch.tensor(table["row"].astype(int).to_numpy())
    cols = torch.tensor([classes.index(c) for c in table["class"]])
    truth = torch.from_numpy(clean)[rows, cols]
    assert torch.equal(trainer.observed[rows, cols], truth)
    for labels in trainer.method.current_labels():
        assert torch.equal(labels[rows, cols], truth)
    assert bool(trainer.method.verified[rows, cols].all()) and int(trainer.method.verified.sum()) == len(table)

    # predictions need the networks and the data only: the sheets may have moved since (mhss-audit needs them: the method)
    moved = filled.with_suffix(".moved")
    filled.rename(moved)
    try:
        assert exit_code(predict_main, "--from", folder / "verified", "--images", "test", "--out", folder / "predicted.csv") == 0
        assert exit_code(audit_main, "--from", folder / "verified", "--out", folder / "audit.csv") == 2
        assert f"{filled}: no such file" in capsys.readouterr().err
    finally:
        moved.rename(filled)

    # a second round: the audit of the verified run lists no verified entry; both sheets train together
    assert exit_code(audit_main, "--from", folder / "verified", "--review", folder / "round2.csv", "--sample", 3) == 0
    round2 = pd.read_csv(folder / "round2.csv", dtype=str, keep_default_na=False)
    first = set(zip(table["row"], table["class"]))
    assert not any(e in first for e in zip(round2.loc[round2["suspect"] == "yes", "row"], round2.loc[round2["suspect"] == "yes", "class"]))
    truth = [int(clean[int(r), classes.index(c)]) for r, c in zip(round2["row"], round2["class"])]
    round2["verdict"] = ["correct" if int(o) == t else "wrong" for o, t in zip(round2["observed"], truth)]
    round2.to_csv(folder / "round2.csv", index=False)
    config = config_file(folder, noise={"verified": [str(filled), str(folder / "round2.csv")]})
    assert exit_code(train_main, "--config", config, "--out", folder / "round2") == 0
    both = json.loads((folder / "round2" / "summary.json").read_text())["review"]
    assert both["verified_entries"] == len(first | set(zip(round2["row"], round2["class"])))


def test_review_sheets_that_do_not_fit_are_refused_in_one_line(sheet, tmp_path, capsys):
    folder, table, filled, *_ = sheet

    def variant(name: str, change) -> str:
        t = change(table.copy())
        path = tmp_path / f"{name}.csv"
        t.to_csv(path, index=False)
        return str(path)

    def set_at(t, column, value, i=0):
        t.loc[i, column] = value
        return t

    first = table.iloc[0]
    flipped = "correct" if first["verdict"] == "wrong" else "wrong"
    cases = [
        ("unknown-row", [variant("unknown-row", lambda t: set_at(t, "row", "99999"))], "row 99999 is not an image of the training split"),
        ("unknown-class", [variant("unknown-class", lambda t: set_at(t, "class", "digit 42"))], "unknown class 'digit 42'"),
        ("other-dataset", [variant("other-dataset", lambda t: t.assign(dataset="ucmerced"))], "the sheet is of dataset 'ucmerced'"),
        ("other-split", [variant("other-split", lambda t: t.assign(split="train-000000000000"))], "written for another training split"),
        ("empty-verdicts", [variant("empty-verdicts", lambda t: t.assign(verdict=""))], "the verdict column is empty"),
        ("bad-verdict", [variant("bad-verdict", lambda t: set_at(t, "verdict", "maybe"))], "verdict must be one of correct, wrong, unsure"),
        ("disagree", [str(filled), variant("disagree", lambda t: set_at(t, "verdict", flipped))], f"is {flipped} here (label"),
        ("missing", [str(tmp_path / "nowhere.csv")], "nowhere.csv: no such file"),
        # the silent wrong result: a row naming another image would flip the row number's image instead
        (
            "other-image",
            [variant("other-image", lambda t: set_at(t, "image", t.loc[t["row"] != t.loc[0, "row"], "image"].iloc[0]))],
            "is not row",
        ),
        (
            "sorted-by-image",  # a spreadsheet sort that moved the row numbers but not the images
            [variant("sorted-by-image", lambda t: t.assign(image=t["image"].sort_values().tolist()))],
            "the sheet was sorted or edited",
        ),
        (
            "no-sample",
            [variant("no-sample", lambda t: t[t["random_sample"] == "no"])],
            "method.noise_rate_source: verified measures the rates on a random sample",
        ),
    ]
    for name, files, words in cases:
        config = config_file(tmp_path, noise={"verified": files}, method={"noise_rate_source": "verified"})
        assert exit_code(train_main, "--config", config, "--out", tmp_path / f"run-{name}") == 2, name
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, (name, err)
        assert not (tmp_path / f"run-{name}").exists(), name
    config = config_file(tmp_path, method={"noise_rate_source": "verified"})
    assert exit_code(train_main, "--config", config, "--out", tmp_path / "run-no-sheets") == 2
    assert "noise.verified, which is not set" in capsys.readouterr().err
    assert exit_code(audit_main, "--from", folder / "run", "--out", tmp_path / "a.csv", "--sample", "5") == 2
    assert "--sample: only with --review" in capsys.readouterr().err
    for suffix in ("xlsx", "parquet"):  # it suggests only what it accepts (was: ".parquet or .csv", then .parquet refused)
        assert exit_code(audit_main, "--from", folder / "run", "--review", tmp_path / f"s.{suffix}") == 2
        err = capsys.readouterr().err
        assert f"s.{suffix}: expected a file name ending in .csv" in err and "parquet or" not in err, err


@pytest.mark.slow
def test_a_study_trains_every_trial_and_arm_on_the_verified_labels(sheet, tmp_path):
    """mhss-tune with noise.verified (a relative path, from where the study starts): the searched trials and the
    baseline arm each rebuild the run with the same verified labels."""
    import os
    import shutil
    import subprocess
    import sys

    from mhss_ray.apply.locate import locate
    from tests.conftest import REPO
    from tests.studies import result_rows

    folder, table, filled, *_ = sheet
    shutil.copy(filled, tmp_path / "verdicts.csv")
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for key, value in MHSS.items():
        data.setdefault(key, {}).update(value)
    data["noise"]["verified"] = ["verdicts.csv"]
    data["method"]["noise_rate_source"] = "verified"
    data["runtime"]["threads"] = 1
    data["schedule"]["epochs"] = 3
    data["search"] = {"method.alpha": {"dist": "uniform", "low": 0.5, "high": 1.0}}
    data["tune"] = {
        "num_samples": 2, "max_concurrent_trials": 2, "baselines": ["asl"], "scheduler": {"name": "fifo"},
        "search_alg": {"name": "random", "seed": 1}, "resources": {"workers": 0, "cpus_per_worker": 1}, "storage_path": "studies",
        "share_warmup": "off",
    }  # fmt: skip
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_AUTH_MODE="disabled")
    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", "space.yaml"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = tmp_path / "studies" / "space"
    rows = result_rows(study)
    assert len(rows) == 3 and all(len(r) == 3 for r in rows.values())
    arms = [t for t, r in rows.items() if r[0]["config"].get("baseline") == "asl"]
    assert len(arms) == 1
    for trial_id in rows:
        trainer = locate(str(study), trial_id).trainer()
        assert trainer.review["verified_entries"] == len(table)
        assert trainer.review["labels_changed"] == int((table["verdict"] == "wrong").sum())
