import numpy as np
import pytest

from mhss_ray.config import NoiseConfig
from mhss_ray.data.noise import inject_naive, inject_noise


@pytest.fixture
def clean():
    rng = np.random.default_rng(0)
    probs = np.linspace(0.05, 0.6, 7)
    return (rng.random((500, 7)) < probs).astype(np.uint8)


@pytest.mark.parametrize("rate", [0.0, 0.13, 0.2, 0.4])
def test_naive_flips_exact_counts_per_class(clean, rate):
    before = clean.copy()
    out = inject_naive(clean, rate, np.random.default_rng(1))
    assert np.array_equal(clean, before), "clean labels must stay untouched"
    for c in range(clean.shape[1]):
        k = int(np.floor(rate * clean[:, c].sum()))
        assert ((clean[:, c] == 1) & (out.labels[:, c] == 0)).sum() == k  # omissions
        assert ((clean[:, c] == 0) & (out.labels[:, c] == 1)).sum() == k  # additions
    assert np.array_equal(out.mask, out.labels != clean)
    assert np.allclose(out.rates, (out.labels != clean).mean(axis=0))


def test_noise_is_seeded_and_none_injects_nothing(clean):
    a = inject_noise(NoiseConfig(mode="naive", rate=0.3), clean, run_seed=5)
    b = inject_noise(NoiseConfig(mode="naive", rate=0.3), clean, run_seed=5)
    c = inject_noise(NoiseConfig(mode="naive", rate=0.3), clean, run_seed=6)
    assert np.array_equal(a.labels, b.labels) and not np.array_equal(a.labels, c.labels)
    none = inject_noise(NoiseConfig(mode="none"), clean, run_seed=5)
    assert np.array_equal(none.labels, clean) and none.rates.sum() == 0
