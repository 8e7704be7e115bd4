"""mhss-predict on a real run trained on real image files: its own test split, a folder, a manifest."""

import json

import numpy as np
import pandas as pd
import pytest

from mhss_ray.cli import predict_main, train_main
from mhss_ray.data import fixtures
from mhss_ray.train.metrics import mean_average_precision
from tests.conftest import REPO, TEST_MODEL

SETTINGS = ["data.image_size=32", "data.batch_size=8", "schedule.epochs=2", "runtime.device=cpu", "method.name=asl"]


@pytest.fixture(scope="module")
def ucmerced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucmerced")
    fixtures.write_ucmerced(root / "data")
    sets = [a for s in [*SETTINGS, "data.name=ucmerced", f"data.root={root / 'data'}"] for a in ("--set", s)]
    with pytest.raises(SystemExit) as exit_:
        train_main(["--config", str(REPO / "benchmarks" / "base.yaml"), "--out", str(root / "run"), *sets])
    assert exit_.value.code == 0
    return root


def run_predict(*args) -> int:
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(a) for a in args])
    return exit_.value.code


def test_predicting_the_runs_own_test_split_reproduces_its_recorded_test_map(ucmerced_run, tmp_path, capsys):
    run = ucmerced_run / "run"
    assert run_predict("--from", run, "--images", "test", "--out", tmp_path / "test.parquet") == 0
    printed = capsys.readouterr().out
    assert "images predicted" in printed
    table = pd.read_parquet(tmp_path / "test.parquet")
    classes = fixtures.UCMERCED_CLASSES
    assert list(table.columns) == ["image"] + [c for name in classes for c in (f"p_{name}", f"pred_{name}")]
    # the recorded test mAP of the checkpoint's epoch, from the probabilities the table holds
    from mhss_ray.apply.locate import locate

    trainer = locate(str(run)).trainer()
    recorded = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_mAP"]
    probs = table[[f"p_{c}" for c in classes]].to_numpy()
    assert mean_average_precision(probs, trainer.data.test.labels) == pytest.approx(recorded, abs=1e-6)
    # decisions follow the checkpoint's per-class thresholds, chosen on validation
    state_thresholds = np.array(locate(str(run)).state["thresholds"])
    assert ((probs >= state_thresholds) == table[[f"pred_{c}" for c in classes]].to_numpy().astype(bool)).all()
    # the thresholds beside the table, and (the split's labels being known) per-class and mean metrics
    thresholds = pd.read_csv(tmp_path / "test.thresholds.csv", dtype={"class": str})
    assert thresholds["class"].tolist() == classes and np.allclose(thresholds["threshold"], state_thresholds)
    metrics = pd.read_csv(tmp_path / "test.metrics.csv", dtype={"class": str})
    assert metrics["class"].tolist() == [*classes, "mean"]
    assert metrics["AP"].iloc[-1] == pytest.approx(recorded, abs=1e-4)  # every test class has positives here
    assert f"mAP {recorded:.2f}" in printed


def test_the_table_gets_the_users_umask_permissions(ucmerced_run, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert run_predict("--from", ucmerced_run / "run", "--images", "val", "--out", tmp_path / "val.csv") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "val.csv").stat().st_mode) == 0o644  # as any file the user makes (was 0600)


def test_a_folder_and_a_manifest_of_image_files_are_predicted_in_the_same_way(ucmerced_run, tmp_path):
    run, images = ucmerced_run / "run", ucmerced_run / "data" / "Images"
    files = sorted(p for p in images.rglob("*.tif"))
    assert run_predict("--from", run, "--images", images, "--out", tmp_path / "folder.csv") == 0
    folder = pd.read_csv(tmp_path / "folder.csv")
    assert folder["image"].tolist() == [str(p) for p in files]
    manifest = tmp_path / "new.csv"
    manifest.write_text("file\n" + "".join(f"{p}\n" for p in files[:5]))
    assert run_predict("--from", run, "--images", manifest, "--out", tmp_path / "manifest.csv") == 0
    listed = pd.read_csv(tmp_path / "manifest.csv")
    assert len(listed) == 5
    assert np.allclose(listed.filter(like="p_").to_numpy(), folder.filter(like="p_").to_numpy()[:5], atol=1e-6)


def test_a_model_of_an_in_memory_dataset_predicts_a_folder_of_its_images(tmp_path, capsys):
    """digits-mosaic is built in memory: its test images written as PNG files are predicted as the split is."""
    from PIL import Image

    from mhss_ray.apply.locate import locate

    sets = [f"{k}={v}" for k, v in {"data.image_size": 16, "data.n_train": 96, "data.n_val": 32, "data.n_test": 32}.items()]
    sets += ["schedule.epochs=1", "runtime.device=cpu", "method.name=asl", f"model.name={TEST_MODEL}", "data.batch_size=32"]
    args = ["--config", str(REPO / "benchmarks" / "base.yaml"), "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))]
    with pytest.raises(SystemExit) as exit_:
        train_main(args)
    assert exit_.value.code == 0
    images = locate(str(tmp_path / "run")).trainer().data.test.images.images  # uint8 N x C x 16 x 16
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(8):
        pixels = images[i].permute(1, 2, 0).numpy()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(folder / f"img{i}.png")
    assert run_predict("--from", tmp_path / "run", "--images", folder, "--out", tmp_path / "folder.csv") == 0
    assert run_predict("--from", tmp_path / "run", "--images", "test", "--out", tmp_path / "split.csv") == 0
    from_files = pd.read_csv(tmp_path / "folder.csv").filter(like="p_").to_numpy()
    from_split = pd.read_csv(tmp_path / "split.csv").filter(like="p_").to_numpy()[:8]
    assert np.allclose(from_files, from_split, atol=1e-5)  # PNG is lossless: the same pixels, the same probabilities
    assert not (tmp_path / "folder.metrics.csv").exists()  # a folder has no labels


def test_bad_input_gets_one_line(ucmerced_run, tmp_path, capsys):
    run = ucmerced_run / "run"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frame.png").write_bytes(b"not a png")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--images", empty], "no image files"),
        (["--images", broken], "frame.png: cannot decode image"),
        (["--images", tmp_path / "nothing.txt"], "expected train, val, test, a folder of images or a manifest"),
    ]
    for args, words in cases:
        assert run_predict("--from", run, *args, "--out", tmp_path / "out.csv") == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.csv").exists()
