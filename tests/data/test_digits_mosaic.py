import numpy as np
from sklearn.datasets import load_digits

from mhss_ray.config import DataConfig
from mhss_ray.data import digits_mosaic
from mhss_ray.data.digits_mosaic import build, split_base_digits


def test_same_seed_same_data_other_seed_other_data():
    cfg = DataConfig(n_train=50, n_val=20, n_test=20, image_size=32)
    a, b, c = build(cfg, seed=1), build(cfg, seed=1), build(cfg, seed=2)
    for split in ("train", "val", "test"):
        sa, sb, sc = getattr(a, split), getattr(b, split), getattr(c, split)
        assert np.array_equal(sa.labels, sb.labels)
        assert np.array_equal(sa.images.images.numpy(), sb.images.images.numpy())
        assert not np.array_equal(sa.images.images.numpy(), sc.images.images.numpy())


def test_sizes_and_shapes_follow_the_config():
    cfg = DataConfig(n_train=37, n_val=11, n_test=13, image_size=40, grid=3)
    data = build(cfg, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (37, 11, 13)
    x, idx = data.train.images[5]
    assert x.shape == (1, 40, 40) and idx == 5
    assert data.train.labels.shape == (37, 10) and data.num_classes == 10 and data.in_chans == 1


def test_base_digits_split_is_disjoint_and_complete():
    targets = load_digits().target
    parts = split_base_digits(targets, [0.6, 0.2, 0.2], np.random.default_rng(0))
    joined = np.concatenate(parts)
    assert len(joined) == len(targets) == len(set(joined.tolist()))
    for part in parts:  # stratified: every digit class in every split
        assert set(targets[part].tolist()) == set(range(10))


def _tiles(mosaics: np.ndarray, g: int) -> np.ndarray:
    n = len(mosaics)
    return mosaics[:, 0].reshape(n, g, 8, g, 8).transpose(0, 1, 3, 2, 4).reshape(n, g * g, 8, 8)


def test_each_split_is_composed_from_its_own_digits_and_labels_match_tiles():
    """At native resolution every tile must be a base digit of the mosaic's own split (or blank),
    and the labels must be exactly the classes of the non-blank tiles."""
    g, seed = 2, 4
    cfg = DataConfig(n_train=300, n_val=100, n_test=100, image_size=g * 8, grid=g)
    data = build(cfg, seed)
    digits = load_digits()
    parts = split_base_digits(digits.target, cfg.base_split, np.random.default_rng([seed, 0]))
    scaled = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    for split, idx in zip(("train", "val", "test"), parts):
        pool = {scaled[i].tobytes(): digits.target[i] for i in idx}
        s = getattr(data, split)
        tiles = _tiles(s.images.images.numpy(), g)
        for row, labels in zip(tiles, s.labels):
            present = set()
            for tile in row:
                if not tile.any():
                    continue
                assert tile.tobytes() in pool, f"{split} mosaic uses a digit from another split"
                present.add(int(pool[tile.tobytes()]))
            assert set(np.flatnonzero(labels).tolist()) == present


def test_class_prior_is_skewed():
    data = build(DataConfig(n_train=3000, n_val=10, n_test=10, image_size=16), seed=0)
    freq = data.train.labels.mean(axis=0)
    assert freq[0] > 2 * freq[9]
    assert np.all(np.diff(digits_mosaic.class_prior(1.0)) < 0)
