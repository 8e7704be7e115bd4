"""The rules of each method on small hand-built tensors (METHODS.md sections 4-7)."""

import io

import torch

from mhss_ray.config import MethodConfig
from mhss_ray.methods import AsymmetricLoss
from mhss_ray.methods.coselfie import CoSELFIE
from mhss_ray.methods.coteaching import CoTeaching
from mhss_ray.methods.disc import DISC, binary_gce, disc_sets
from mhss_ray.methods.labels import LabelTable, pack_rows, unpack_rows
from mhss_ray.methods.mhss import MHSS
from mhss_ray.methods.selection import small_loss_mask

ASL = AsymmetricLoss()
OBSERVED = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]], dtype=torch.uint8)
CLEAN = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.uint8)
ALL = torch.arange(4)


def agreeing_logits(labels=OBSERVED) -> torch.Tensor:
    """Confident logits that predict exactly `labels`."""
    return labels.float() * 10 - 5


def test_coteaching_cross_update():
    cfg = MethodConfig(name="coteaching", alpha=1.0, t_k=1, granularity="per_class")
    m = CoTeaching(cfg, OBSERVED, CLEAN, ASL, eps_c=torch.tensor([0.5, 0.5]), eps=0.5)
    m.begin_epoch(3)
    z1 = torch.tensor([[3.0, 1.0], [-2.0, 0.5], [0.1, 2.0], [1.0, -3.0]])
    z2 = torch.tensor([[-3.0, 2.0], [2.0, -1.0], [1.0, -2.0], [0.0, 0.0]])
    s = m.select(ALL, [z1, z2])
    mask1 = small_loss_mask(ASL(z1, OBSERVED), m.tau(), "per_class", OBSERVED)
    mask2 = small_loss_mask(ASL(z2, OBSERVED), m.tau(), "per_class", OBSERVED)
    assert not torch.equal(mask1, mask2)
    assert torch.equal(s[0].mask, mask2) and torch.equal(s[1].mask, mask1)  # network 1 learns from network 2's pick
    assert torch.equal(s[0].targets, OBSERVED) and s[0].mask.sum() == 4  # ceil(0.5 * 4) per column


def test_global_tau_without_cdnr_and_per_class_tau_with_it():
    eps_c = torch.tensor([0.1, 0.5])
    cfg = MethodConfig(name="mhss", alpha=2.0, t_k=10)
    plain = MHSS(MethodConfig(name="mhss", alpha=2.0, t_k=10, cdnr=False), OBSERVED, CLEAN, ASL, eps_c, eps=0.3)
    cdnr = MHSS(cfg, OBSERVED, CLEAN, ASL, eps_c, eps=0.3)
    for m in (plain, cdnr):
        m.begin_epoch(5)
    assert torch.allclose(plain.tau(), torch.tensor([0.3, 0.3]))  # 2 * 0.3 * 5/10
    assert torch.allclose(cdnr.tau(), torch.tensor([0.1, 0.5]))  # 2 * eps_c * 5/10


def run_epochs(m, logits_per_epoch):
    out = None
    for e, logits in enumerate(logits_per_epoch):
        m.begin_epoch(e)
        out = m.select(ALL, logits)
    return out


def selfie(cls=CoSELFIE, **kw):
    """Half of every column forgotten (tau 0.5 from the start): revision 2 refurbishes only entries
    the small-loss trick rejects, so the noisy entries must be among the forgotten ones."""
    cfg = MethodConfig(name="mhss", q=2, theta=0.05, warmup=kw.pop("warmup", 1), alpha=1.0, t_k=0, granularity="per_class", **kw)
    eps_c = torch.tensor([0.5, 0.5])
    if cls is CoSELFIE:
        return CoSELFIE(cfg, OBSERVED, CLEAN, ASL, eps_c, 0.5)
    return MHSS(cfg, OBSERVED, CLEAN, ASL, eps_c, 0.5)


def test_warmup_trains_on_everything_and_fills_histories():
    m = selfie(warmup=2)
    s = run_epochs(m, [[agreeing_logits(CLEAN), agreeing_logits(CLEAN)]])
    assert s[0].mask is None and s[1].mask is None and torch.equal(s[0].targets, OBSERVED)
    assert torch.equal(m.histories[0].positive_fraction(ALL), CLEAN.float() / 2)  # one of q = 2 recorded
    assert m.stats.changed == 0


def test_coselfie_refurbishes_by_majority_and_peer_learns_with_those_labels():
    m = selfie()
    # network 1 keeps predicting the clean labels, network 2 the observed ones
    s = run_epochs(m, [[agreeing_logits(CLEAN), agreeing_logits(OBSERVED)]] * 2)
    assert torch.equal(m.tables[0].all(), CLEAN)  # corrected: (0,0) 0 -> 1 and (2,0) 1 -> 0
    assert torch.equal(m.tables[1].all(), OBSERVED)  # network 2 agreed with the observed labels
    # network 2 (index 1) learns from S_1 | R_1 with network 1's labels; R_1 covers every entry here
    assert torch.equal(s[1].targets, CLEAN) and s[1].mask.all()
    assert torch.equal(s[0].targets, OBSERVED)
    assert int(m.stats.changed) == 2 and int(m.stats.changed_correct) == 2


def test_corrections_persist_when_the_history_becomes_uncertain():
    m = selfie()
    run_epochs(m, [[agreeing_logits(CLEAN), agreeing_logits(OBSERVED)]] * 2)
    flipped = agreeing_logits(OBSERVED)  # network 1 now predicts the observed labels: history [clean, observed]
    m.begin_epoch(2)
    m.select(ALL, [flipped, agreeing_logits(OBSERVED)])
    u = m.histories[0].uncertainty(ALL)
    assert u[0, 0] == 1.0 and u[2, 0] == 1.0  # no longer refurbishable ...
    assert torch.equal(m.tables[0].all(), CLEAN)  # ... but the corrections stay


def test_jcc_either_one_network_is_enough_and_both_apply_it():
    m = selfie(cls=MHSS, jcc=True, jcc_rule="either")
    uncertain = [agreeing_logits(OBSERVED), agreeing_logits(CLEAN)]  # network 2 flips between the two
    s = run_epochs(m, [[agreeing_logits(CLEAN), uncertain[0]], [agreeing_logits(CLEAN), uncertain[1]]])
    assert torch.equal(m.tables[0].all(), CLEAN) and torch.equal(m.tables[1].all(), CLEAN)
    assert torch.equal(s[0].targets, CLEAN) and torch.equal(s[1].targets, CLEAN)
    assert s[0].mask[0, 0] and s[1].mask[0, 0]  # the corrected entry is in R for both peers


def test_jcc_agree_needs_both_networks_and_then_both_apply_it():
    uncertain = [agreeing_logits(OBSERVED), agreeing_logits(CLEAN)]  # network 2 flips between the two
    one = selfie(cls=MHSS, jcc=True)  # the default rule: agree
    run_epochs(one, [[agreeing_logits(CLEAN), uncertain[0]], [agreeing_logits(CLEAN), uncertain[1]]])
    assert torch.equal(one.tables[0].all(), OBSERVED) and torch.equal(one.tables[1].all(), OBSERVED)
    both = selfie(cls=MHSS, jcc=True)
    s = run_epochs(both, [[agreeing_logits(CLEAN), agreeing_logits(CLEAN)]] * 2)
    assert torch.equal(both.tables[0].all(), CLEAN) and torch.equal(both.tables[1].all(), CLEAN)
    assert torch.equal(s[0].targets, CLEAN) and torch.equal(s[1].targets, CLEAN)


def test_jcc_disagreement_is_not_corrected():
    m = selfie(cls=MHSS, jcc=True)
    # on entry (0, 0): network 1 always says 1, network 2 always says 0 (both certain, disagreeing),
    # and both small-loss tricks reject it (network 2's loss there is the largest of its column)
    z1, z2 = agreeing_logits(OBSERVED), agreeing_logits(OBSERVED)
    z1[0, 0], z2[0, 0] = 5.0, 0.0  # p 0.5 < p* 0.75: network 2 predicts 0
    s = run_epochs(m, [[z1, z2]] * 2)
    assert m.tables[0].all()[0, 0] == 0 and m.tables[1].all()[0, 0] == 0
    # without JCC network 1 would have corrected it for its own labels
    m2 = selfie(cls=MHSS, jcc=False)
    run_epochs(m2, [[z1, z2]] * 2)
    assert m2.tables[0].all()[0, 0] == 1 and m2.tables[1].all()[0, 0] == 0
    assert s is not None


def test_selfie_state_round_trips_through_a_weights_only_checkpoint():
    m = selfie(cls=MHSS)
    run_epochs(m, [[agreeing_logits(CLEAN), agreeing_logits(OBSERVED)]] * 2)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = selfie(cls=MHSS)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for a, b in zip(m.histories + m.tables, fresh.histories + fresh.tables):
        assert torch.equal(getattr(a, "bits", getattr(a, "packed", None)), getattr(b, "bits", getattr(b, "packed", None)))


def test_label_table_packs_eight_labels_a_byte():
    labels = (torch.rand(50, 17) > 0.5).to(torch.uint8)
    assert pack_rows(labels).shape == (50, 3)
    assert torch.equal(unpack_rows(pack_rows(labels), 17), labels)
    t = LabelTable(labels)
    t.set(torch.tensor([3]), torch.ones(1, 17, dtype=torch.uint8))
    assert t.get(torch.tensor([3])).sum() == 17 and t.nbytes == 150


def test_disc_sets():
    y = torch.tensor([[1, 1, 1, 0]])
    p_w = torch.tensor([[0.9, 0.9, 0.05, 0.6]])
    p_s = torch.tensor([[0.8, 0.3, 0.02, 0.7]])
    t = torch.full((1, 4), 0.5)
    clean, hard, purified = disc_sets(p_w, p_s, y, t, t, sigma=0.4)
    assert clean.tolist() == [[True, False, False, False]]
    assert hard.tolist() == [[False, True, False, False]]
    # entry 2: neither view trusts y = 1 and the mean says 0 with 0.965 > min(0.5 + 0.4, 0.99)
    # entry 3: neither trusts y = 0 but the mean says 1 with only 0.65
    assert purified.tolist() == [[False, False, True, False]]
    high = torch.full((1, 4), 0.7)  # the bar is capped at 0.99: 0.7 + 0.4 -> 0.99 > 0.965
    assert not disc_sets(p_w, p_s, y, high, high, sigma=0.4)[2].any()


def test_disc_threshold_update_and_gce():
    cfg = MethodConfig(name="disc", warmup=1, disc_lambda=0.9)
    m = DISC(cfg, OBSERVED, CLEAN, ASL)
    m.p_w[:] = 0.8
    m.p_s[:] = 0.1
    m.begin_epoch(0)
    m.end_epoch(0)  # the last warm-up epoch updates
    assert torch.allclose(m.t_w, torch.full_like(m.t_w, 0.9 * 0.5 + 0.1 * 0.8), atol=1e-4)  # P kept in float16
    assert torch.allclose(m.t_s, torch.full_like(m.t_s, 0.9 * 0.5 + 0.1 * 0.9), atol=1e-4)
    g = binary_gce(torch.logit(torch.tensor([[0.8, 0.8]])), torch.tensor([[1, 0]]), q=0.7)
    assert torch.allclose(g, torch.tensor([[(1 - 0.8**0.7) / 0.7, (1 - 0.2**0.7) / 0.7]]))
