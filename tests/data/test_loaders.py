"""The image-file loaders on fixtures written in the exact on-disk formats (real TIFF and PNG files)."""

import json

import numpy as np
import pytest
import torch

from mhss_ray.config import RunConfig, from_dict
from mhss_ray.data import build_dataset, class_names
from mhss_ray.data import fixtures
from mhss_ray.data.images import ImageReader
from mhss_ray.data.splits import split_rows


def config(name, root, **data) -> RunConfig:
    return from_dict(RunConfig, {"data": {"name": name, "root": str(root), "image_size": 32, **data}, "runtime": {"device": "cpu"}})


def read_back(bundle) -> dict[str, np.ndarray]:
    """{file name: labels} over the three splits, as the loader delivers them."""
    out = {}
    for split in (bundle.train, bundle.val, bundle.test):
        for name, row in zip(split.images.names.to_pylist(), split.labels):
            assert name not in out, f"{name} is in two splits"
            out[name] = row
    return out


def test_ucmerced_labels_class_order_and_seeded_split(tmp_path):
    names, labels = fixtures.write_ucmerced(tmp_path, scenes=3, per_scene=10)
    cfg = config("ucmerced", tmp_path, split=[0.6, 0.2, 0.2])
    bundle = build_dataset(cfg)
    assert bundle.class_names == fixtures.UCMERCED_CLASSES == class_names(cfg)
    got = read_back(bundle)
    assert len(got) == 30
    for name, row in zip(names, labels):
        assert np.array_equal(got[f"{name.rstrip('0123456789')}/{name}.tif"], row)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (18, 6, 6)
    again = build_dataset(cfg)
    assert again.test.images.names.equals(bundle.test.images.names)  # seeded
    other = build_dataset(config("ucmerced", tmp_path, split=[0.6, 0.2, 0.2], split_seed=1))
    assert not other.test.images.names.equals(bundle.test.images.names)
    image, index = bundle.val.images[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and index == 0


def test_treesat_threshold_splits_and_bands(tmp_path):
    shares, train, test = fixtures.write_treesat(tmp_path, n_train=30, n_test=8)
    cfg = config("treesat", tmp_path, val_fraction=0.2, label_threshold=0.3)
    bundle = build_dataset(cfg)
    genera = sorted({g for pairs in shares.values() for g, _ in pairs})
    assert bundle.class_names == genera == class_names(cfg)
    got = read_back(bundle)
    for name, pairs in shares.items():
        want = np.zeros(len(genera), dtype=np.uint8)
        for genus, share in pairs:
            want[genera.index(genus)] = share >= 0.3
        assert np.array_equal(got[name], want), name
    assert bundle.test.images.names.to_pylist() == test  # the official test list, in order
    assert set(bundle.train.images.names.to_pylist()) | set(bundle.val.images.names.to_pylist()) == set(train)
    assert len(bundle.val) == 6 and bundle.in_chans == 3
    # band choice: the fixture marks pixel (0, 0) of bands IR, G, B, R with 0, 50, 100, 150
    path = bundle.test.images.path(0)
    assert ImageReader((3, 1, 2))(path)[0, 0].tolist() == [150, 50, 100]  # R, G, B (the default)
    irgb = build_dataset(config("treesat", tmp_path, bands=["IR", "G", "B"]))
    assert irgb.test.images.reader(path)[0, 0].tolist() == [0, 50, 100]
    four = build_dataset(config("treesat", tmp_path, bands=["IR", "G", "B", "R"]))
    assert four.in_chans == 4 and four.test.images[0][0].shape == (4, 32, 32)
    assert four.test.images.reader(path)[0, 0].tolist() == [0, 50, 100, 150]


@pytest.mark.parametrize("per_split_folders", [False, True], ids=["flat", "per-split-folders"])
def test_sewerml_labels_weights_and_layouts(tmp_path, per_split_folders):
    written = fixtures.write_sewerml(tmp_path, n_train=40, n_val=12, per_split_folders=per_split_folders)
    bundle = build_dataset(config("sewerml", tmp_path, val_fraction=0.25))
    assert bundle.class_names == fixtures.SEWER_CODES
    got = read_back(bundle)
    for names, labels in written.values():
        for name, row in zip(names, labels):
            assert np.array_equal(got[name], row)
    assert bundle.test.images.names.to_pylist() == written["Val"][0]  # SewerML_Val.csv is the test split
    assert (len(bundle.train), len(bundle.val)) == (30, 10)
    assert bundle.class_weights[0] == 1.0 and bundle.class_weights[-1] == 0.4396  # RB ... OK
    image, _ = bundle.train.images[0]
    assert image.shape == (3, 32, 32)


def test_sewerml_clean_subset_gives_verified_rows(tmp_path):
    written = fixtures.write_sewerml(tmp_path, n_train=30, n_val=6)
    names, labels = written["Train"]
    verified = labels[:10].copy()
    verified[:, 0] = 1 - verified[:, 0]  # the verifier disagrees with the inspector on RB
    (tmp_path / "verified.csv").write_text(fixtures.sewer_csv(names[:10], verified))
    cfg = from_dict(
        RunConfig,
        {
            "data": {"name": "sewerml", "root": str(tmp_path), "val_fraction": 0.2},
            "noise": {"mode": "real", "clean_subset": "verified.csv"},
        },
    )
    bundle = build_dataset(cfg)
    train_names = bundle.train.images.names.to_pylist()
    in_train = [n for n in names[:10] if n in train_names]
    assert len(bundle.verified_rows) == len(in_train) > 0
    for row, lab in zip(bundle.verified_rows, bundle.verified_labels):
        assert np.array_equal(lab, verified[names.index(train_names[row])])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_columns_and_split_column(tmp_path, fmt):
    files, labels, frame = fixtures.write_manifest(tmp_path, fmt=fmt)
    bundle = build_dataset(config("manifest", tmp_path))
    assert bundle.class_names == ["crack", "root", "deposit", "joint"]
    got = read_back(bundle)
    for f, row in zip(files, labels):
        assert np.array_equal(got[f], row)
    for split, part in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test)):
        assert part.images.names.to_pylist() == frame.loc[frame["split"] == split, "file"].tolist()


def test_manifest_label_list_and_no_split_column(tmp_path):
    files, labels, _ = fixtures.write_manifest(tmp_path, label_list=True, with_split=False)
    cfg = config("manifest", tmp_path, labels_column="labels", split=[0.5, 0.25, 0.25])
    bundle = build_dataset(cfg)
    assert bundle.class_names == sorted(["crack", "root", "deposit", "joint"]) == class_names(cfg)
    order = [["crack", "root", "deposit", "joint"].index(c) for c in bundle.class_names]
    got = read_back(bundle)
    for f, row in zip(files, labels):
        assert np.array_equal(got[f], row[order])
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (18, 9, 9)
    # the class order can be given
    ordered = build_dataset(config("manifest", tmp_path, labels_column="labels", classes=["joint", "root", "crack", "deposit"]))
    assert ordered.class_names == ["joint", "root", "crack", "deposit"]


def test_stratified_split_puts_a_rare_class_in_every_part():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    labels[:, 4] = 0
    labels[rng.choice(300, 12, replace=False), 4] = 1  # 4% of the images
    parts = split_rows(labels, [0.5, 0.25, 0.25], seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    assert [int(labels[p, 4].sum()) for p in parts] == [6, 3, 3]


TRAIN_ONE_EPOCH = [
    "--config",
    "benchmarks/base.yaml",
    "--set",
    "data.image_size=32",
    "--set",
    "data.batch_size=8",
    "--set",
    "schedule.epochs=1",
    "--set",
    "runtime.device=cpu",
]


def write_any(fmt, root):
    if fmt == "sewerml":
        written = fixtures.write_sewerml(root, n_train=30, n_val=10)
        names, labels = written["Train"]
        (root / "verified.csv").write_text(fixtures.sewer_csv(names[:12], labels[:12]))
    else:
        fixtures.WRITERS[fmt](root)


@pytest.mark.parametrize(
    "fmt, extra",
    [
        ("ucmerced", ["method.name=coteaching", "noise.mode=complex"]),
        ("treesat", ["method.name=disc", "method.warmup=0", "data.bands=[IR, G, B, R]", "data.num_workers=2", "method.mixup_alpha=0"]),
        (
            "sewerml",
            [
                "method.name=mhss",
                "method.warmup=1",
                "method.q=1",
                "schedule.epochs=2",
                "noise.mode=real",
                "noise.clean_subset=verified.csv",
                "method.noise_rate_source=given",
                "method.noise_rate=0.1",
            ],
        ),
        ("manifest", ["method.name=asl", "noise.mode=naive"]),
    ],
)
def test_mhss_train_runs_one_epoch_on_each_format(tmp_path, cli_env, fmt, extra):
    import subprocess
    import sys

    from tests.conftest import REPO

    write_any(fmt, tmp_path / "data")
    out = tmp_path / "run"
    args = [*TRAIN_ONE_EPOCH, "--out", str(out), "--set", f"data.name={fmt}", "--set", f"data.root={tmp_path / 'data'}"]
    for item in extra:
        args += ["--set", item]
    proc = subprocess.run(
        [sys.executable, "-c", "from mhss_ray.cli import train_main; train_main()", *args],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    epochs = len((out / "metrics.jsonl").read_text().splitlines())  # 1; 2 for MHSS (warm-up >= q = 1)
    assert metrics["epoch"] == epochs and np.isfinite(metrics["train_loss"]) and 0 <= metrics["test_mAP"] <= 100
    if fmt == "sewerml":  # Sewer-ML's own metrics, and selection measured on the verified subset
        assert 0 <= metrics["test_F2_CIW"] <= 100 and 0 <= metrics["test_F1_normal"] <= 100
        assert 0 < metrics["selection_precision"] <= 1 and "noise_rate" in metrics
        assert "verified images" in proc.stdout
    else:
        assert "test_F2_CIW" not in metrics
    # data.cache_dir: auto -> decode_cache/ beside --out, one entry per split, built before the first epoch
    # (DISC reads its two views from it, treesat its 4 bands, with 2 DataLoader workers)
    entries = [p for p in (tmp_path / "decode_cache").iterdir() if p.is_dir()]
    assert len(entries) == 3 and all((p / "meta.json").is_file() for p in entries), entries
    assert proc.stdout.count("decode cache: decoding") == 3
    assert "cache_dir: " + str(tmp_path / "decode_cache") in (out / "config.yaml").read_text()


def test_image_datasets_pickle_for_spawned_dataloader_workers(tmp_path):
    import pickle

    fixtures.write_treesat(tmp_path, n_train=10, n_test=4)
    for bands in (["R", "G", "B"], ["IR", "G", "B", "R"]):
        bundle = build_dataset(config("treesat", tmp_path, bands=bands, val_fraction=0.2))
        for ds in (bundle.train.images, bundle.train.images.two_views(), bundle.test.images):
            clone = pickle.loads(pickle.dumps(ds))
            assert len(clone) == len(ds)
        assert torch.equal(pickle.loads(pickle.dumps(bundle.test.images))[1][0], bundle.test.images[1][0])
