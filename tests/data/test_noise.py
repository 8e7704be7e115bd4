import numpy as np
import pytest

from mhss_ray.config import NoiseConfig
from mhss_ray.noise import inject_naive, inject_noise
from mhss_ray.errors import UserError


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


def _complex(**kw):
    base = dict(mode="complex", rate=0.2, confusions=[], sloppy_fraction=0.0)
    base.update(kw)
    return NoiseConfig(**base)


NAMES = [str(i) for i in range(7)]


def test_complex_class_rates_and_omission_share(clean):
    before = clean.copy()
    cfg = _complex(rates={"0": 0.1, "3": 0.3}, omission_share=0.7)
    out = inject_noise(cfg, clean, run_seed=2, class_names=NAMES)
    assert np.array_equal(clean, before)
    for c, eps in ((0, 0.1), (3, 0.3)):
        pos = int(clean[:, c].sum())
        errors = int((out.labels[:, c] != clean[:, c]).sum())
        assert errors == round(2 * eps * pos)
        omissions = int(((clean[:, c] == 1) & (out.labels[:, c] == 0)).sum())
        assert omissions == round(0.7 * errors)
    assert np.allclose(out.rates, (out.labels != clean).mean(axis=0))
    # drawn rates of the other classes stay within rate * (1 +- spread)
    for c in (1, 2, 4, 5, 6):
        pos = clean[:, c].sum()
        assert (out.labels[:, c] != clean[:, c]).sum() <= round(2 * 0.3 * pos) + 1


def test_complex_confusions_report_a_as_b(clean):
    cfg = _complex(rate=0.0, confusions=[["1", "2", 0.5]])
    out = inject_noise(cfg, clean, run_seed=0, class_names=NAMES)
    eligible = (clean[:, 1] == 1) & (clean[:, 2] == 0)
    swapped = eligible & (out.labels[:, 1] == 0) & (out.labels[:, 2] == 1)
    assert 0.3 < swapped.sum() / eligible.sum() < 0.7
    assert np.array_equal(out.mask.any(axis=1), swapped)  # nothing else changed at rate 0


def test_complex_errors_concentrate_on_sloppy_reports(clean):
    out = inject_noise(_complex(rate=0.2, sloppy_fraction=0.2, sloppy_weight=10.0), clean, run_seed=0, class_names=NAMES)
    per_image = out.mask.sum(axis=1)
    top = np.sort(per_image)[::-1][: len(per_image) // 5]
    assert top.sum() > 0.5 * per_image.sum()  # a fifth of the reports carry most of the errors


def test_complex_is_seeded_and_names_unknown_classes(clean):
    a = inject_noise(_complex(), clean, run_seed=1, class_names=NAMES)
    b = inject_noise(_complex(), clean, run_seed=1, class_names=NAMES)
    assert np.array_equal(a.labels, b.labels)
    with pytest.raises(UserError, match=r"noise.confusions\[0\]: unknown class 'x'"):
        inject_noise(_complex(confusions=[["x", "1", 0.1]]), clean, run_seed=1, class_names=NAMES)
    with pytest.raises(UserError, match="noise.rates: unknown class 'z'"):
        inject_noise(_complex(rates={"z": 0.1}), clean, run_seed=1, class_names=NAMES)
