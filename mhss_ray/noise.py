"""Label noise: the synthetic injectors (METHODS.md section 9) and the noise rates the forget rates
use (section 2).

Every injector is seeded, returns the noisy labels, the noise mask and the realised entry-level rates
epsilon_c (the fraction of column c whose observed label differs from the clean one), and never
modifies the clean labels it is given. `noise_rates` and `polarity_rates` give the methods their
eps_c: the oracle's realised rates (the same count, `wrong_entries`, in torch) or the given ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import MethodConfig, NoiseConfig, check_forget_rates
from .errors import UserError


UNKNOWN = 255  # a clean label nobody knows (real noise outside the verified subset)


@dataclass
class NoisyLabels:
    labels: np.ndarray  # N x C uint8, what the method observes
    mask: np.ndarray  # N x C bool, True where the observed label differs from a known clean one
    rates: np.ndarray  # C float, realised epsilon_c over the rows whose clean labels are known (NaN: none)
    clean: np.ndarray  # N x C uint8, the clean labels metrics compare against; UNKNOWN where not known

    @property
    def known_rows(self) -> int:
        return int((self.clean != UNKNOWN).all(axis=1).sum())


def wrong_entries(observed, clean):
    """(wrong, known): N x C masks of the entries whose observed label differs from a known clean one,
    and of the entries whose clean label is known (numpy arrays or torch tensors alike)."""
    known = clean != UNKNOWN
    return (observed != clean) & known, known


def _result(clean: np.ndarray, noisy: np.ndarray) -> NoisyLabels:
    mask, known = wrong_entries(noisy, clean)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = mask.sum(axis=0) / known.sum(axis=0)
    return NoisyLabels(noisy, mask, rates, clean)


def real_noise(observed: np.ndarray, verified_rows: np.ndarray | None, verified_labels: np.ndarray | None) -> NoisyLabels:
    """`real`: the labels as given; their clean values are known only on the verified rows."""
    clean = np.full_like(observed, UNKNOWN)
    if verified_rows is not None:
        clean[verified_rows] = verified_labels
    return _result(clean, observed.copy())


def inject_naive(clean: np.ndarray, rate: float, rng: np.random.Generator) -> NoisyLabels:
    """Class-wise mixed noise: for every class, flip floor(rate * |pos_c|) random positives to 0
    (omissions) and as many random negatives to 1 (additions)."""
    noisy = clean.copy()
    for c in range(clean.shape[1]):
        pos = np.flatnonzero(clean[:, c] == 1)
        neg = np.flatnonzero(clean[:, c] == 0)
        k = min(int(np.floor(rate * len(pos) + 1e-9)), len(neg))  # METHODS.md section 9: 0.7 of 90 flips 63
        noisy[rng.choice(pos, k, replace=False), c] = 0
        noisy[rng.choice(neg, k, replace=False), c] = 1
    return _result(clean, noisy)


def class_rates(cfg: NoiseConfig, class_names: list[str], rng: np.random.Generator) -> np.ndarray:
    """epsilon_c of the complex injector: the configured ones, the others drawn around `rate`."""
    unknown = set(cfg.rates or {}) - set(class_names)
    if unknown:
        raise UserError(f"noise.rates: unknown class {sorted(unknown)[0]!r} (classes: {', '.join(class_names)})")
    lo, hi = cfg.rate * (1 - cfg.spread), min(1.0, cfg.rate * (1 + cfg.spread))
    drawn = rng.uniform(lo, hi, len(class_names))
    return np.array([float((cfg.rates or {}).get(name, d)) for name, d in zip(class_names, drawn)])


def _pick(candidates: np.ndarray, k: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k of the candidate rows without replacement, likelier where the row weight is higher."""
    k = min(k, len(candidates))
    if k == 0:
        return candidates[:0]
    w = weights[candidates]
    return rng.choice(candidates, k, replace=False, p=w / w.sum())


def inject_complex(clean: np.ndarray, cfg: NoiseConfig, class_names: list[str], confusions: list, rng: np.random.Generator) -> NoisyLabels:
    """What inspection reports look like (METHODS.md section 9, `complex`).

    1. Confusions first: for each [a, b, r], every image with a present and b absent has a
       chance r of being reported as b instead of a (a -> 0, b -> 1).
    2. Then class c receives round(2 * eps_c * |pos_c|) errors in all (the naive injector's count at
       the same rate), less the confusion flips it already got; `omission_share` of them are
       omissions (positive -> 0), the rest additions (negative -> 1).
    Errors land `sloppy_weight` times likelier on the `sloppy_fraction` of images written carelessly,
    so a careless report carries several errors.
    """
    n, c = clean.shape
    index = {name: i for i, name in enumerate(class_names)}
    noisy = clean.copy()
    weights = np.ones(n)
    weights[rng.permutation(n)[: int(round(cfg.sloppy_fraction * n))]] = cfg.sloppy_weight
    for i, (a, b, rate) in enumerate(confusions):
        for name in (a, b):
            if str(name) not in index:
                raise UserError(f"noise.confusions[{i}]: unknown class {str(name)!r} (classes: {', '.join(class_names)})")
        ia, ib = index[str(a)], index[str(b)]
        rows = np.flatnonzero((clean[:, ia] == 1) & (clean[:, ib] == 0) & (noisy[:, ia] == 1) & (noisy[:, ib] == 0))
        swapped = rows[rng.random(len(rows)) < rate * weights[rows] / weights[rows].mean()] if len(rows) else rows
        noisy[swapped, ia] = 0
        noisy[swapped, ib] = 1
    eps = class_rates(cfg, class_names, rng)
    for j in range(c):
        pos = np.flatnonzero(clean[:, j] == 1)
        budget = int(round(2 * eps[j] * len(pos))) - int((noisy[:, j] != clean[:, j]).sum())
        if budget <= 0:
            continue
        omissions = int(round(cfg.omission_share * budget))
        still_pos = pos[noisy[pos, j] == 1]
        noisy[_pick(still_pos, omissions, weights, rng), j] = 0
        still_neg = np.flatnonzero((clean[:, j] == 0) & (noisy[:, j] == 0))
        noisy[_pick(still_neg, budget - omissions, weights, rng), j] = 1
    return _result(clean, noisy)


def inject_noise(
    cfg: NoiseConfig,
    clean: np.ndarray,
    run_seed: int,
    class_names: list[str] | None = None,
    default_confusions: list | None = None,
    verified: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> NoisyLabels:
    """`clean`: the dataset's training labels (for `real`, the labels as given; `verified` holds the
    rows and labels of the clean subset, if any)."""
    if cfg.mode == "real":
        return real_noise(clean, *verified)
    rng = np.random.default_rng([cfg.seed if cfg.seed is not None else run_seed, 9001])
    if cfg.mode == "none":
        return _result(clean, clean.copy())
    if cfg.mode == "naive":
        return inject_naive(clean, cfg.rate, rng)
    if cfg.mode == "complex":
        names = class_names or [str(i) for i in range(clean.shape[1])]
        confusions = cfg.confusions if cfg.confusions is not None else (default_confusions or [])
        return inject_complex(clean, cfg, names, confusions, rng)
    raise ValueError(f"unknown noise mode {cfg.mode!r}")  # the config validation rules this out


# ----------------------------------------------------------------------------- the rates the forget rates use


def noise_rates(m: MethodConfig, observed: torch.Tensor, clean: torch.Tensor, per_class: bool = True) -> tuple[torch.Tensor, float]:
    """(eps_c, global eps) the forget rates use (METHODS.md section 2): `oracle` reads the realised
    rates of the injected noise; `given` takes method.noise_rates / method.noise_rate."""
    c = observed.shape[1]
    if m.noise_rate_source == "estimated":  # none until the networks have been trained (methods/estimated.py)
        return torch.zeros(c, device=observed.device), 0.0
    if m.noise_rate_source == "oracle":
        wrong, known = wrong_entries(observed, clean)
        if not known.any():
            raise UserError(
                "method.noise_rate_source: oracle measures the noise against clean labels, which noise.mode real does not have; "
                "give method.noise_rates or method.noise_rate (or a noise.clean_subset to measure them on)"
            )
        eps_c = wrong.sum(0).float() / known.sum(0).clamp(min=1)
    else:
        if m.noise_rates is not None and len(m.noise_rates) != c:
            raise UserError(f"method.noise_rates: expected {c} values (one per class), got {len(m.noise_rates)}")
        given = m.noise_rates if m.noise_rates is not None else [m.noise_rate] * c
        eps_c = torch.tensor(given, dtype=torch.float32, device=observed.device)
    eps = m.noise_rate if m.noise_rate is not None else float(eps_c.mean())
    check_forget_rates(
        m.alpha, [float(x) for x in eps_c], m.noise_rate, f"{m.noise_rate_source} eps_c", m.granularity, per_class
    )  # the oracle's rates are known only now
    return eps_c, eps


def sampled_rates(m: MethodConfig, measured: dict, device, per_class: bool = True) -> tuple[torch.Tensor, float, torch.Tensor]:
    """(eps_c, global eps, 2 x C per-polarity rates) measured on noise.verified's random sample (`verified`)."""
    eps_c = torch.tensor(measured["eps_c"], dtype=torch.float32, device=device)
    eps_pm = torch.tensor(measured["eps_pm"], dtype=torch.float32, device=device)
    eps = m.noise_rate if m.noise_rate is not None else float(eps_c.mean())
    check_forget_rates(m.alpha, [float(x) for x in eps_c], m.noise_rate, "verified eps_c", m.granularity, per_class)
    return eps_c, eps, eps_pm


def polarity_rates(
    m: MethodConfig, observed: torch.Tensor, clean: torch.Tensor, eps_c: torch.Tensor, per_class: bool = True
) -> torch.Tensor:
    """2 x C: the share of the observed negatives (row 0) and of the observed positives (row 1) of
    each class that are wrong (METHODS.md section 2, revision 2). `oracle` counts them; `given` puts
    omission_share of the eps_c * N wrong entries among the observed negatives, the rest among the positives."""
    if m.noise_rate_source == "estimated":
        return torch.zeros(2, observed.shape[1], device=observed.device)
    pos = observed.bool()
    n_pos, n_neg = pos.sum(0).double().clamp(min=1), (~pos).sum(0).double().clamp(min=1)
    if m.noise_rate_source == "oracle":
        wrong, _ = wrong_entries(observed, clean)
        rates = torch.stack([(wrong & ~pos).sum(0) / n_neg, (wrong & pos).sum(0) / n_pos])
    else:
        wrong = eps_c.double() * observed.shape[0]
        rates = torch.stack([m.omission_share * wrong / n_neg, (1 - m.omission_share) * wrong / n_pos])
    rates = rates.clamp(0.0, 1.0).float()
    judged = rates if per_class else rates.mean(1)  # without CDNR each polarity forgets at the classes' mean
    check_forget_rates(
        m.alpha,
        [float(x) for x in judged.flatten()],
        None,
        f"{m.noise_rate_source} per-polarity eps (negatives, then positives{'' if per_class else ', the means over the classes'})",
        m.granularity,
    )
    return rates


# ----------------------------------------------------------------------------- rates estimated from the networks

MAX_ESTIMATED_RATE = 0.5  # above half of a polarity wrong, the labels would carry no signal: never estimated higher


def confident_rates(observed: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """2 x C: the estimated share of wrong entries among the observed negatives (row 0) and positives
    (row 1) of each class, by a confident-joint count (confident learning, per class as a binary task):
    an entry is confidently positive when p reaches the mean p of the observed positives of its class,
    confidently negative when 1 - p reaches the mean 1 - p of the observed negatives (the larger margin
    wins where both hold); the share of a polarity's confident entries confident in the other value."""
    pos = observed.bool()
    p = probs.float()
    inf = torch.full_like(p[0], float("inf"))  # a class without observed positives (negatives): nothing is confidently one
    t1 = torch.where(pos.any(0), torch.where(pos, p, 0).sum(0) / pos.sum(0).clamp(min=1), inf)
    t0 = torch.where((~pos).any(0), torch.where(~pos, 1 - p, 0).sum(0) / (~pos).sum(0).clamp(min=1), inf)
    conf1, conf0 = p >= t1, (1 - p) >= t0
    says1 = conf1 & (~conf0 | ((p - t1) >= ((1 - p) - t0)))
    says0 = conf0 & ~says1
    confident = says0 | says1
    wrong_neg = (~pos & says1).sum(0) / (~pos & confident).sum(0).clamp(min=1)
    wrong_pos = (pos & says0).sum(0) / (pos & confident).sum(0).clamp(min=1)
    return torch.stack([wrong_neg, wrong_pos]).float().clamp(0.0, MAX_ESTIMATED_RATE)


def mixture_rates(observed: torch.Tensor, probs: torch.Tensor, max_points: int = 100_000, seed: int = 0) -> torch.Tensor:
    """2 x C like `confident_rates`, from a two-component Gaussian mixture on the logit of each entry's
    probability of its observed label, per class and polarity: the weight of the component with the lower
    mean (scikit-learn's GaussianMixture; at most `max_points` entries per fit, drawn at random). Logits,
    not losses: -log p of a confident network is strongly skewed and a Gaussian pair then misplaces the split."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    obs = observed.bool().cpu().numpy()
    p = probs.float().clamp(1e-6, 1 - 1e-6).cpu().numpy()
    out = np.zeros((2, obs.shape[1]))
    for c in range(obs.shape[1]):
        for v in (0, 1):
            rows = np.flatnonzero(obs[:, c] == v)
            if len(rows) < 10:
                continue
            if len(rows) > max_points:
                rows = rng.choice(rows, max_points, replace=False)
            q = p[rows, c] if v else 1 - p[rows, c]
            logit = np.log(q / (1 - q)).reshape(-1, 1)
            gm = GaussianMixture(2, random_state=seed).fit(logit)
            out[v, c] = gm.weights_[int(np.argmin(gm.means_.ravel()))]
    return torch.from_numpy(out).float().clamp(0.0, MAX_ESTIMATED_RATE).to(observed.device)


def likelihood_rates(observed: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """2 x C like `confident_rates`, by maximum likelihood of the observed labels under class-conditional
    flips: per class, P(observed 1 | x) = r01 + (1 - r01 - r10) p_T(x), where p_T = sigmoid(logit(p) / T)
    reads the network's probability as the clean one after a temperature T shared by every class; the
    flips (r01, r10) of each class (in [0, MAX_ESTIMATED_RATE]) and T maximise the likelihood together.
    The polarity rates are then each observed entry's posterior of being wrong, averaged per class and
    polarity. A network unsure of an image (p near 0.5) explains a disagreement by its doubt, where a
    confident-joint count calls every confident disagreement noise; T corrects the network's own scale
    (a warm-up network is too timid: T came out near 0.3). Under augmentation at the end of the warm-up the
    entry-level error fell from 0.24-0.25 (count) to 0.08-0.11 (T 1) and 0.05-0.06 (T fitted): docs/methods.md."""
    from scipy.optimize import minimize, minimize_scalar
    from scipy.special import expit

    obs = observed.bool().cpu().numpy()
    p = probs.float().clamp(1e-6, 1 - 1e-6).cpu().double().numpy()
    logit = np.log(p / (1 - p))
    columns = [c for c in range(obs.shape[1]) if obs[:, c].any() and not obs[:, c].all()]  # one polarity: nothing to fit

    def fit(c: int, pc: np.ndarray) -> tuple[float, float, float]:
        y = obs[:, c]

        def nll(r):
            q = np.clip(r[0] + (1 - r[0] - r[1]) * pc, 1e-12, 1 - 1e-12)
            dq = np.where(y, 1 / q, -1 / (1 - q))  # d log-likelihood / d q
            grad = np.array([np.sum(dq * (1 - pc)), np.sum(dq * -pc)])
            return -np.sum(np.where(y, np.log(q), np.log1p(-q))), -grad

        best = minimize(nll, np.array([0.05, 0.05]), jac=True, method="L-BFGS-B", bounds=[(0.0, MAX_ESTIMATED_RATE)] * 2)
        return float(best.fun), *best.x

    def profile(log_t: float) -> float:  # the likelihood at this temperature, every class at its best flips
        scaled = expit(logit / np.exp(log_t))
        return sum(fit(c, scaled[:, c])[0] for c in columns)

    log_t = fit_log_temperature(profile, minimize_scalar) if columns else 0.0
    scaled = expit(logit / np.exp(log_t))
    out = np.zeros((2, obs.shape[1]))
    for c in columns:
        y, pc = obs[:, c], scaled[:, c]
        _, r01, r10 = fit(c, pc)
        wrong_if_neg = pc * r10 / np.maximum(pc * r10 + (1 - pc) * (1 - r01), 1e-12)  # clean 1, observed 0
        wrong_if_pos = (1 - pc) * r01 / np.maximum((1 - pc) * r01 + pc * (1 - r10), 1e-12)
        out[0, c], out[1, c] = wrong_if_neg[~y].mean(), wrong_if_pos[y].mean()
    return torch.from_numpy(out).float().clamp(0.0, MAX_ESTIMATED_RATE).to(observed.device)


# The temperature's search range: a coarse log grid over it, then a bounded fit between the grid's neighbours of
# the best point. A timid network (T 0.07) lies outside the [0.1, 4] once searched, and its rates then ran 5x off.
TEMPERATURE_RANGE = (0.01, 100.0)


def fit_log_temperature(profile, minimize_scalar, points: int = 13) -> float:
    """log T minimising `profile` over TEMPERATURE_RANGE: the grid finds the basin, the bounded fit its floor."""
    grid = np.linspace(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1]), points)
    values = [profile(x) for x in grid]
    i = int(np.argmin(values))
    low, high = grid[max(i - 1, 0)], grid[min(i + 1, points - 1)]
    best = minimize_scalar(profile, bounds=(low, high), method="bounded", options={"xatol": 0.02})
    return float(best.x) if best.fun <= values[i] else float(grid[i])


def at_cap(polarity: torch.Tensor) -> torch.Tensor:
    """Per class, whether an estimated polarity rate sits at MAX_ESTIMATED_RATE: a cap, not a measurement."""
    return (polarity >= MAX_ESTIMATED_RATE - 1e-6).any(0)


ESTIMATORS = {"likelihood": likelihood_rates, "confident": confident_rates, "mixture": mixture_rates}


def entry_rates(observed: torch.Tensor, polarity: torch.Tensor) -> torch.Tensor:
    """Entry-level eps_c from per-polarity rates (2 x C): the wrong share of the whole column."""
    pos = observed.bool()
    n_pos, n_neg = pos.sum(0).float(), (~pos).sum(0).float()
    return (polarity[0] * n_neg + polarity[1] * n_pos) / observed.shape[0]
