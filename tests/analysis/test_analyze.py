"""mhss-analyze and the notebook on real studies: a finished one (the demo space on a tiny budget,
ASHA stopping some trials) and one whose mhss-tune was killed mid-trial."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from mhss_ray.analysis.plots import PLOTS
from tests.conftest import REPO
from tests.studies import reported_epochs

pytestmark = pytest.mark.slow

ANALYZE = [sys.executable, "-c", "from mhss_ray.cli import analyze_main; analyze_main()"]


@pytest.fixture(scope="module")
def studies(demo_study, killed_study, tmp_path_factory):
    """(storage folder, mhss-tune's output, env): study `demo` finished (the session's tiny demo
    study) and study `resume`, interrupted by SIGKILL mid-trial (the snapshot taken right after)."""
    storage, _, env, done = demo_study
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.copytree(killed_study[3] / "resume", storage / "resume")
    return storage, done.stdout, env


def tables_epochs(out, trial_id: str) -> pd.DataFrame:
    epochs = pq.read_table(out / "epochs.parquet").to_pandas()
    return epochs[epochs["trial_id"] == trial_id].sort_values("epoch")


def analyze(args, env, **kw):
    return subprocess.run(ANALYZE + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=600, **kw)


def test_mhss_tune_points_at_mhss_analyze(studies):
    storage, stdout, _ = studies
    assert f"mhss-analyze {storage / 'demo'}" in stdout


def test_analyze_writes_tables_summary_best_config_and_plots(studies, tmp_path):
    storage, _, env = studies
    out = tmp_path / "analysis"
    proc = analyze([storage / "demo", "--out", out], env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    trials = pq.read_table(out / "trials.parquet").to_pandas()
    epochs = pq.read_table(out / "epochs.parquet").to_pandas()
    assert len(trials) == 5 + 2 and trials["trial_id"].is_unique  # the searched trials and the baseline arms
    arms = trials[trials["baseline"].fillna("") != ""]
    assert sorted(arms["baseline"]) == sorted(arms["method"]) == ["asl", "coteaching"] and (arms["epochs"] == 4).all()
    assert len(epochs) == trials["epochs"].sum() == len(epochs.drop_duplicates(["trial_id", "epoch"]))  # one row per trial x epoch
    for col in ("method.alpha", "method.theta", "method.warmup", "eps_0", "eps_9", "best_val_mAP", "last_val_mAP", "node", "checkpoint"):
        assert col in trials, col
    for col in ("val_mAP", "test_mAP", "selection_precision", "selection_recall", "corrections", "val_AP_0"):
        assert col in epochs, col
    # ASHA stopped some trials before max_t (4 epochs): marked as such, the others completed
    stopped = trials[trials["outcome"] == "stopped early"]
    assert len(stopped) >= 1 and (stopped["epochs"] < 4).all()
    assert (trials.loc[trials["outcome"] == "completed", "epochs"] == 4).all()
    assert set(trials["outcome"]) <= {"completed", "stopped early"}
    # every trial beside its best at the last epoch all searched trials reached: the stopped ones set it
    common = int(trials["common_epoch"].iloc[0])
    assert common == int(trials.drop(arms.index)["epochs"].min())
    for _, trial in trials.iterrows():
        row = epochs[(epochs["trial_id"] == trial["trial_id"]) & (epochs["epoch"] == common)]
        assert trial["val_mAP_at_common"] == row["val_mAP"].iloc[0]

    summary = (out / "summary.md").read_text()
    searched = trials.drop(arms.index)
    best = searched.loc[searched["best_val_mAP"].idxmax()]  # an arm is a reference, never the best trial
    first_row = next(line for line in summary.splitlines() if line.startswith("| ") and "trial_id" not in line and "---" not in line)
    assert first_row.startswith(f"| {best['trial_id']} |"), first_row
    assert "early stopping saved" in summary
    assert f"each trial at epoch {common}, the last one every searched trial reached" in summary
    arm_rows = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines() if line.startswith(("| asl |", "| coteaching |"))}
    for _, arm in arms.iterrows():  # the best trial's gain over each arm, from the table's own figures
        gain = best["best_val_mAP"] - arm["best_val_mAP"]
        assert f"| {gain:.4g} |" in arm_rows[arm["baseline"]], (gain, arm_rows)
    assert "beats every baseline arm" in summary or "does not beat every baseline arm" in summary

    config = out / "best_config_demo.yaml"
    cfg = yaml.safe_load(config.read_text())
    assert cfg["method"]["alpha"] == pytest.approx(best["method.alpha"]) and cfg["method"]["noise_rates"][9] == pytest.approx(best["eps_9"])
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mhss_ray.cli import train_main; train_main()",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "rerun"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "rerun" / "metrics.jsonl").read_text().count("\n") == cfg["schedule"][
        "epochs"
    ]  # as is: a shorter run would cut its warm-up
    # the trial's own numbers, standalone: the config records the threads the trial computed with (the space
    # leaves runtime.threads unset) and a portable decode cache
    trial = tables_epochs(out, best["trial_id"])
    assert cfg["runtime"]["threads"] == int(trial["torch_threads"].iloc[-1]) and cfg["data"]["cache_dir"] == "auto"
    rerun = [json.loads(line) for line in (tmp_path / "rerun" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_mAP"] for r in rerun] == trial["val_mAP"].tolist()
    assert [r["train_loss"] for r in rerun] == trial["train_loss"].tolist()

    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(
        f"demo_{n}.png"
        for n in (
            "metric_vs_alpha",
            "learning_curves",
            "per_class_ap",
            "selection",
            "noise_rates",
            "parallel_coordinates",
            "importance",
            "val_vs_test",
        )  # fmt: skip
    )
    for png in pngs:
        pixels = np.asarray(Image.open(png).convert("L"))
        assert min(pixels.shape) > 200 and pixels.std() > 5, f"{png.name} looks empty"


def test_two_studies_make_one_table_and_the_interrupted_one_is_marked(studies, tmp_path):
    storage, _, env = studies
    out = tmp_path / "both"
    proc = analyze([storage / "demo", storage / "resume", "--out", out], env)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr[-3000:]  # no warnings either (θ not searched in `resume`)
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    epochs = pq.read_table(out / "epochs.parquet").to_pandas()
    assert set(trials["study"]) == {"demo", "resume"} and set(epochs["study"]) == {"demo", "resume"}
    interrupted = trials[trials["study"] == "resume"]
    assert "unfinished" in set(interrupted["outcome"]), interrupted[["trial_id", "status", "outcome", "epochs"]]
    assert (interrupted["epochs"] < 6).all()
    reported = reported_epochs(storage / "resume")
    for _, row in interrupted.iterrows():  # every epoch Tune recorded, once
        assert sorted(epochs.loc[epochs["trial_id"] == row["trial_id"], "epoch"]) == reported.get(row["trial_id"], [])
    assert "## demo" in (out / "summary.md").read_text() and "## resume" in (out / "summary.md").read_text()


def test_folder_without_a_study_is_one_line(tmp_path, studies):
    _, _, env = studies
    (tmp_path / "not-a-study").mkdir()
    proc = analyze([tmp_path / "not-a-study", "--out", tmp_path / "out"], env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "holds no Tune study" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_optuna_export_reads_back_every_trial_param_and_epoch(studies, tmp_path):
    import optuna

    storage, _, env = studies
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = tmp_path / "analysis"
    exported = time.time()
    proc = analyze([storage / "demo", "--out", out, "--optuna-storage", url], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"optuna-dashboard {url}" in proc.stdout
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    epochs = pq.read_table(out / "epochs.parquet").to_pandas()
    arms = trials[trials["baseline"].fillna("") != ""]
    searched = trials.drop(arms.index).set_index("trial_id")

    study = optuna.load_study(study_name="demo", storage=url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.metric_names == ["val_mAP"]
    for _, arm in arms.iterrows():  # arms: study attributes, not trials
        assert study.user_attrs[f"baseline {arm['baseline']} best val_mAP"] == pytest.approx(arm["best_val_mAP"])
    assert sorted(t.user_attrs["trial_id"] for t in study.trials) == sorted(searched.index)
    states = {"completed": "COMPLETE", "stopped early": "PRUNED", "errored": "FAIL", "unfinished": "FAIL"}
    for t in study.trials:
        row = searched.loc[t.user_attrs["trial_id"]]
        assert t.state.name == states[row["outcome"]]
        mine = epochs[epochs["trial_id"] == t.user_attrs["trial_id"]].sort_values("epoch")
        last = mine["val_mAP"].iloc[-1]  # a pruned trial keeps its last value, as Optuna's own pruning does
        assert t.value == (pytest.approx(row["best_val_mAP"]) if t.state.name == "COMPLETE" else pytest.approx(last))
        # Tune's own times, not the export's: the trial started before it ended, both before the export began
        assert t.datetime_start.timestamp() == pytest.approx(row["started"], abs=1e-3)
        assert row["started"] < row["ended"] < exported
        assert t.datetime_complete.timestamp() == pytest.approx(row["ended"], abs=1e-3)
        assert set(t.params) == {"method.alpha", "method.theta", "method.warmup", "optim.lr", *[f"eps_{i}" for i in range(10)]}
        for key, value in t.params.items():
            assert value == pytest.approx(row[key]), key
        mine = epochs[epochs["trial_id"] == t.user_attrs["trial_id"]]
        assert t.intermediate_values == pytest.approx(dict(zip(mine["epoch"], mine["val_mAP"])))
    assert {t.state.name for t in study.trials} == {"COMPLETE", "PRUNED"}  # ASHA stopped some

    again = analyze([storage / "demo", "--out", tmp_path / "again", "--optuna-storage", url], env)  # never replaces a study
    assert again.returncode == 2 and "already holds a study named 'demo'" in again.stderr and "Traceback" not in again.stderr
    assert not (tmp_path / "again").exists() and len(optuna.load_study(study_name="demo", storage=url).trials) == len(searched)


def test_a_read_only_optuna_storage_is_refused_before_anything_is_written(studies, tmp_path):
    import optuna

    storage, _, env = studies
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'ro.db'}", study_name="other")
    url = f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true"  # SQLite's read-only connection
    before = (tmp_path / "ro.db").read_bytes()
    proc = analyze([storage / "demo", "--out", tmp_path / "out", "--optuna-storage", url], env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--optuna-storage {url}: cannot write" in lines[0] and "readonly database" in lines[0]
    assert not (tmp_path / "out").exists() and (tmp_path / "ro.db").read_bytes() == before


def test_sigterm_leaves_no_temporary_folder(studies, tmp_path):
    import signal
    import time

    storage, _, env = studies
    proc = subprocess.Popen(ANALYZE + [str(storage / "demo"), "--out", str(tmp_path / "out")], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".out-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the analysis ended before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "terminated" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the hidden folder nor a half analysis


def test_notebook_runs_against_the_study_as_documented(studies, tmp_path):
    """`MHSS_STUDY=<relative path> make notebook`, from the repository (analysis/README.md): the kernel runs in
    analysis/, the path is read from where the command started."""
    import nbformat

    storage, _, _ = studies
    env = dict(os.environ, MHSS_STUDY=os.path.relpath(storage / "demo", REPO), PWD=str(REPO))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        ["make", "--no-print-directory", "notebook", f"NOTEBOOK_OUT={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    nb = nbformat.read(tmp_path / "explore_study.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(PLOTS) == 8  # every plot, once each
    assert any("demo" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_a_truncated_result_line_keeps_every_readable_epoch_and_is_flagged(studies, tmp_path):
    """A cut line in one trial's result.json (a disk filled up, a copy interrupted): Tune's reader
    drops all of that trial's epochs; mhss-analyze keeps every line that parses, takes the trial's
    outcome from Tune's state, and names the damage. A healthy analysis prints nothing on stderr."""
    storage, _, env = studies
    copy = tmp_path / "demo"
    shutil.copytree(storage / "demo", copy)
    clean = analyze([copy, "--out", tmp_path / "before"], env)
    assert clean.returncode == 0 and clean.stderr.strip() == "", clean.stderr[-3000:]
    before = pq.read_table(tmp_path / "before" / "trials.parquet").to_pandas().set_index("trial_id")

    longest = max(copy.rglob("result.json"), key=lambda f: len(f.read_text().splitlines()))
    lines = longest.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # epoch 2 cut in half
    longest.write_text("\n".join(lines) + "\n")
    proc = analyze([copy, "--out", tmp_path / "after"], env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    after = pq.read_table(tmp_path / "after" / "trials.parquet").to_pandas().set_index("trial_id")
    epochs = pq.read_table(tmp_path / "after" / "epochs.parquet").to_pandas()
    trial = next(t for t in after.index if after.loc[t, "damaged"])
    assert after.loc[trial, "damaged"] == "result.json: 1 unreadable line (line 2)"
    assert sorted(epochs.loc[epochs["trial_id"] == trial, "epoch"]) == [e for e in range(1, len(lines) + 1) if e != 2]
    assert list(after["outcome"]) == list(before["outcome"]) and list(after["epochs"]) == list(before["epochs"])
    assert "Damaged result files" in (tmp_path / "after" / "summary.md").read_text()
