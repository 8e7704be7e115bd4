"""The decoded-image cache (data/decode_cache.py) on real image files: what trials read from it is
what they would have decoded, it is keyed by what its pixels depend on, and builders never clash."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp

from mhss_ray.config import DataConfig
from mhss_ray.data.decode_cache import MARKER, DecodedImages, cache_key, open_cache, stored_short_side
from mhss_ray.data.images import ImageFiles, ImageReader
from mhss_ray.data.transforms import build_transforms
from tests.conftest import TEST_MODEL

SIZE = 64  # the network input; stored short side 96


def write_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Smooth gradients, shapes and noise at 160 x 120 (a CCTV frame's 4:3, larger than the stored side)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    yy, xx = np.mgrid[0:120, 0:160]
    for i in range(n):
        img = np.stack([xx * rng.uniform(0.5, 1.5), yy * rng.uniform(0.5, 2), (xx + yy) * rng.uniform(0.3, 1)], -1)
        y0, x0 = rng.integers(0, 80, 2)
        img[y0 : y0 + 30, x0 : x0 + 50] = rng.uniform(0, 255, 3)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img, "RGB").save(folder / f"f{i:03d}.png")
        names.append(f"f{i:03d}.png")
    return names


def datasets(folder: Path, names: list[str], cache_dir: Path, said: list | None = None):
    reader = ImageReader()
    t = build_transforms(DataConfig(image_size=SIZE), 3, [0.5] * 3, [0.25] * 3)
    arrow = pa.array(names)
    cache = open_cache(cache_dir, "photos", str(folder), arrow, reader, SIZE, say=(said.append if said is not None else print))
    plain = ImageFiles(folder, arrow, reader, [t.train], SIZE, weak=t.weak, plain=t.eval)
    cached = ImageFiles(folder, arrow, reader, [t.train], SIZE, weak=t.weak, plain=t.eval, cache=cache)
    return plain, cached, cache


def seeded(ds, i: int, seed: int) -> torch.Tensor:
    random.seed(seed)
    np.random.seed(seed)  # timm's RandAugment picks its operations with numpy
    torch.manual_seed(seed)
    image, index = ds[i]
    assert index == i
    return image


def test_cached_images_augment_like_the_files(tmp_path):
    """With the same random draws the two give the same crop, flip and RandAugment operations, so the
    images differ only by resampling twice (at most a few grey levels on average), far less than two
    augmentations of one image differ; over many draws the pixel statistics agree."""
    names = write_photos(tmp_path / "images", 24)
    plain, cached, cache = datasets(tmp_path / "images", names, tmp_path / "cache")
    assert cache is not None and len(cache) == 24
    assert min(cache(0).shape[:2]) == stored_short_side(SIZE) == 96 and cache(0).shape == (96, 128, 3)

    # independent draws from each (the crop's offsets are drawn with ranges that depend on the image's
    # size, so equal seeds do not give equal crops): the augmented images' brightness, contrast and
    # sharpness (mean horizontal gradient, what a second resize would blur) are distributed alike
    for view in ("train", "weak"):
        one, two = (plain, cached) if view == "train" else (plain.two_views(), cached.two_views())

        def draws(ds, offset, view=view):
            return torch.stack([
                seeded(ds, i, offset + 100 * i + k)[0] if view == "weak" else seeded(ds, i, offset + 100 * i + k)
                for i in range(len(names)) for k in range(20)
            ])  # fmt: skip

        a, b = draws(one, 10**6), draws(two, 2 * 10**6)
        for stat in (lambda x: x.mean((1, 2, 3)), lambda x: x.std((1, 2, 3))):
            assert ks_2samp(stat(a).numpy(), stat(b).numpy()).pvalue > 0.001, view
        sharp_a, sharp_b = ((x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean().item() for x in (a, b))
        assert abs(sharp_b / sharp_a - 1) < 0.03, (view, sharp_a, sharp_b)  # two bilinear resizes: -16%
    # the evaluation view (whole image, squashed): no randomness, nearly the same pixels
    ev_a, ev_b = plain.evaluation_view()[5][0], cached.evaluation_view()[5][0]
    assert (ev_a - ev_b).abs().mean() < 0.05
    # DISC's two views read the cache too
    assert cached.two_views().cache is cache


def test_cache_is_keyed_by_the_files_and_the_size_and_built_once(tmp_path):
    names = write_photos(tmp_path / "images", 6)
    said: list[str] = []
    _, _, first = datasets(tmp_path / "images", names, tmp_path / "cache", said)
    assert any("decoding 6 photos images once" in line for line in said) and any("built in" in line for line in said)
    said.clear()
    _, _, again = datasets(tmp_path / "images", names, tmp_path / "cache", said)
    assert said == [] and again.folder == first.folder  # opened, not built again
    assert not (first.folder / MARKER).exists()  # published: no longer marked as an unfinished build
    copy = pickle.loads(pickle.dumps(again))  # as sent to a DataLoader worker started with spawn
    assert np.array_equal(copy(3), first(3))

    path = tmp_path / "images" / names[2]
    Image.fromarray(np.zeros((120, 160, 3), np.uint8), "RGB").save(path)  # a changed file
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    _, _, changed = datasets(tmp_path / "images", names, tmp_path / "cache", said)
    assert changed.folder != first.folder and changed(2).max() == 0 and first(2).max() > 0
    bigger = open_cache(tmp_path / "cache", "photos", str(tmp_path / "images"), pa.array(names), ImageReader(), 96, say=said.append)
    assert bigger.folder not in (first.folder, changed.folder) and min(bigger(0).shape[:2]) == 120  # never enlarged
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir() if p.is_dir()) == ["photos"] * 3


def test_an_undecodable_file_is_read_from_the_file_and_reported_as_before(tmp_path):
    names = write_photos(tmp_path / "images", 4)
    (tmp_path / "images" / names[1]).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    plain, cached, cache = datasets(tmp_path / "images", names, tmp_path / "cache")
    assert cache(1) is None and cache(0) is not None
    assert cached[1][1] == plain[1][1] < 0  # a bad item, for the trainer to name or skip
    assert "cannot decode image" in cached.failure(1)


def test_an_unfinished_build_of_its_own_is_removed_and_nothing_else(tmp_path):
    """Removed: a build with the marker, made on this host by a process that is gone. Kept: one without the
    marker, one whose process still runs, one made on another host (which a lock may not reach)."""
    import socket

    names = write_photos(tmp_path / "images", 3)
    key = cache_key(str(tmp_path / "images"), pa.array(names), None, stored_short_side(SIZE))
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    host = socket.gethostname()

    def build(suffix: str, marker: bool = True) -> Path:
        folder = tmp_path / "cache" / f"photos-{key}.building-{suffix}"
        folder.mkdir(parents=True)
        (folder / ("notes.txt" if not marker else MARKER)).write_text("mine")
        return folder

    ours = build(f"{host}-{dead}-0badc0de")
    unmarked = build(f"{host}-{dead}-1badc0de", marker=False)
    running = build(f"{host}-1-2badc0de")  # pid 1 never ends
    elsewhere = build(f"other-host-{dead}-3badc0de")
    datasets(tmp_path / "images", names, tmp_path / "cache")
    assert not ours.exists()
    assert (unmarked / "notes.txt").read_text() == "mine" and running.exists() and elsewhere.exists()


def test_two_processes_opening_at_once_build_it_once(tmp_path):
    """Real processes (as the trials of a study): one builds, the other waits and reads the same entry."""
    names = write_photos(tmp_path / "images", 40)
    code = (
        "import sys, pyarrow as pa; from mhss_ray.data.decode_cache import open_cache; from mhss_ray.data.images import ImageReader\n"
        f"c = open_cache({str(tmp_path / 'cache')!r}, 'photos', {str(tmp_path / 'images')!r}, pa.array({names!r}), ImageReader(), {SIZE})\n"
        "print('ENTRY', c.folder.name, len(c))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    entries = {line for out in outs for line in out.splitlines() if line.startswith("ENTRY")}
    assert len(entries) == 1 and entries.pop().endswith(" 40")
    built = sum("decode cache: decoding" in out for out in outs)
    assert built == 1, outs
    folders = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(folders) == 1 and DecodedImages(folders[0])(39).shape == (96, 128, 3)


def test_a_cache_inside_the_dataset_folder_is_refused(tmp_path):
    from mhss_ray.config import RunConfig, from_dict
    from mhss_ray.data import build_dataset, fixtures
    from mhss_ray.errors import UserError

    fixtures.write_ucmerced(tmp_path / "uc", scenes=2, per_scene=6)
    cfg = from_dict(RunConfig, {"data": {"name": "ucmerced", "root": str(tmp_path / "uc"), "cache_dir": str(tmp_path / "uc" / "cache")}})
    with pytest.raises(UserError, match=r"data.cache_dir: .* is inside the dataset folder"):
        build_dataset(cfg)
    assert not (tmp_path / "uc" / "cache").exists()


# -------------------------------------------------------------- through mhss-train: a result never changes silently

TIMING = {"images_per_s", "train_seconds", "epoch_seconds"}


def train_cli(args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    code = "from mhss_ray.cli import train_main; train_main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory):
    """A 60-image manifest and its config; a run with the cache off, one that builds the cache and one
    that reuses it (same config and seed): (folder, config file, {name: metrics rows without timings})."""
    from mhss_ray.data import fixtures
    import yaml

    t = tmp_path_factory.mktemp("cache-runs")
    fixtures.write_manifest(t / "data", n=60, size=16, classes=("crack", "root", "deposit"))
    cfg = {
        "seed": 0,
        "data": {"name": "manifest", "root": str(t / "data"), "image_size": 16, "batch_size": 16, "cache_dir": str(t / "cache")},
        "noise": {"mode": "naive", "rate": 0.2},
        "model": {"name": TEST_MODEL},
        "method": {"name": "coteaching"},
        "schedule": {"epochs": 2},
        "runtime": {"device": "cpu", "threads": 1},
    }
    (t / "run.yaml").write_text(yaml.safe_dump(cfg))
    rows = {}
    for name, extra in (("off", ["--set", "data.cache_dir=off"]), ("build", []), ("reuse", [])):
        proc = train_cli(["--config", t / "run.yaml", "--out", t / name, *extra])
        assert proc.returncode == 0, proc.stderr
        assert ("decoding 40 manifest images once" in proc.stdout) == (name == "build"), proc.stdout
        rows[name] = metric_rows(t / name)
    return t, rows


def metric_rows(run: Path) -> list[dict]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_cache_off_built_by_this_run_and_reused_train_identically(manifest_run):
    _, rows = manifest_run
    assert len(rows["off"]) == 2
    # NaN != NaN: compare the JSON text
    assert repr(rows["build"]) == repr(rows["off"]) and repr(rows["reuse"]) == repr(rows["off"])


def entry(t: Path, images: int) -> Path:
    """The cache entry of the split with `images` images (train 40, val 10 and test 10: the train one)."""
    for folder in sorted((t / "cache").glob("manifest-*")):
        if folder.is_dir() and (folder / "meta.json").is_file() and len(np.load(folder / "index.npy")) == images:
            return folder
    raise AssertionError("no such entry")


def test_overwritten_shard_is_said_and_the_files_read_instead(manifest_run, tmp_path):
    t, rows = manifest_run
    shard = entry(t, 40) / "shard-00000.u8"
    good = shard.read_bytes()
    try:
        shard.write_bytes(os.urandom(len(good)))  # same size: only the checksums can tell
        proc = train_cli(["--config", t / "run.yaml", "--out", tmp_path / "run"])
        assert proc.returncode == 0, proc.stderr
        said = [line for line in proc.stderr.splitlines() if "checksum" in line]
        assert len(said) == 1 and str(entry(t, 40)) in said[0] and "decoding the image file" in said[0], proc.stderr
        assert repr(metric_rows(tmp_path / "run")) == repr(rows["off"])  # trained on the real pixels, not the garbage
    finally:
        shard.write_bytes(good)


@pytest.mark.parametrize("damage", ["truncated-index", "truncated-shard", "missing-shard"])
def test_damaged_entry_is_named_with_what_to_do(manifest_run, tmp_path, damage):
    t, _ = manifest_run
    folder = entry(t, 40)
    target = folder / ("index.npy" if damage == "truncated-index" else "shard-00000.u8")
    good = target.read_bytes()
    try:
        if damage == "missing-shard":
            target.unlink()
        else:
            target.write_bytes(good[: len(good) // 2])
        proc = train_cli(["--config", t / "run.yaml", "--out", tmp_path / "run"])
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and len(lines[0]) < 300 and "Traceback" not in proc.stderr, proc.stderr
        assert str(folder) in lines[0] and "delete that folder" in lines[0] and "data.cache_dir: off" in lines[0]
        assert "on_bad_image" not in lines[0]  # the image files are fine: never suggest dropping them
        # nothing of the run (the same command trains it once the entry is gone), and the cache it did not start is kept
        assert not (tmp_path / "run").exists() and (folder / "index.npy").exists()
    finally:
        target.write_bytes(good)
