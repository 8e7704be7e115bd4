import numpy as np
from sklearn.metrics import average_precision_score

from mhss_ray.train.metrics import average_precision_per_class, classification_metrics, mean_average_precision


def test_ap_equals_sklearn_on_untied_scores():
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 8)) < np.linspace(0.03, 0.5, 8)).astype(np.uint8)
    scores = rng.random((300, 8)) * 0.5 + targets * rng.random((300, 8)) * 0.6
    want = average_precision_score(targets, scores, average=None)
    assert np.allclose(average_precision_per_class(scores, targets), want)
    assert np.isclose(mean_average_precision(scores, targets), want.mean() * 100)


def test_class_without_positives_is_left_out_of_the_mean():
    targets = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.uint8)
    scores = np.array([[0.9, 0.1], [0.2, 0.5], [0.4, 0.3]])
    ap = average_precision_per_class(scores, targets)
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert mean_average_precision(scores, targets) == 100.0


def test_classification_metrics_keys_and_f1():
    targets = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.8, 0.4]])
    m = classification_metrics(probs, targets, ["a", "b"], "test")
    # predictions at 0.5: [[1,0],[1,1],[1,0]] -> TP 3, FP 1, FN 1 -> micro F1 = 0.75
    assert np.isclose(m["test_f1_micro"], 75.0)
    assert set(m) == {"test_mAP", "test_f1_micro", "test_f1_macro", "test_AP_a", "test_AP_b"}


# Sewer-ML's metrics on six images, classes A B C D with weights 1, 0.5, 0.25, 0.25, worked by hand:
#   image  labels  scores (A, B, C, D)       predicted at 0.5
#   0      A       0.9  0.1  0.2  0.1        A
#   1      A B     0.6  0.4  0.1  0.1        A
#   2      -       0.3  0.2  0.3  0.1        -        (normal, predicted normal)
#   3      B D     0.2  0.8  0.1  0.4        B
#   4      -       0.1  0.6  0.0  0.0        B        (normal, predicted defective)
#   5      A       0.4  0.1  0.1  0.1        -        (defective, predicted normal)
# A: TP 2 FP 0 FN 1 -> P 1, R 2/3, F2 = 5PR / (4P + R) = (10/3) / (14/3) = 5/7
# B: TP 1 FP 1 FN 1 -> P 1/2, R 1/2, F2 = 1/2
# C: no positive, never predicted -> 0;  D: one positive, never predicted -> 0
# F2-CIW = (1 * 5/7 + 0.5 * 1/2) / 2 = 0.482143
# normal: truth {2, 4}, predicted {2, 5} -> TP 1 FP 1 FN 1 -> F1 = 1/2
SEWER_TARGETS = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.uint8)
SEWER_SCORES = np.array(
    [[0.9, 0.1, 0.2, 0.1], [0.6, 0.4, 0.1, 0.1], [0.3, 0.2, 0.3, 0.1], [0.2, 0.8, 0.1, 0.4], [0.1, 0.6, 0.0, 0.0], [0.4, 0.1, 0.1, 0.1]]
)


def test_f2_ciw_and_f1_normal_match_the_hand_computation():
    from mhss_ray.train.metrics import f1_normal, f2_ciw, sewer_metrics

    weights = np.array([1.0, 0.5, 0.25, 0.25])
    assert np.isclose(f2_ciw(SEWER_SCORES, SEWER_TARGETS, weights), (5 / 7 + 0.25) / 2 * 100)
    assert np.isclose(f1_normal(SEWER_SCORES, SEWER_TARGETS), 50.0)
    out = sewer_metrics(SEWER_SCORES, SEWER_TARGETS, weights, "val")
    assert set(out) == {"val_F2_CIW", "val_F1_normal"}
    # the weights matter: weighting only class B gives B's F2
    assert np.isclose(f2_ciw(SEWER_SCORES, SEWER_TARGETS, np.array([0, 1.0, 0, 0])), 50.0)


def test_all_normal_images_predicted_normal_score_a_perfect_f1_normal():
    from mhss_ray.train.metrics import f1_normal

    targets = np.zeros((3, 4), dtype=np.uint8)
    assert f1_normal(np.full((3, 4), 0.1), targets) == 100.0
    assert f1_normal(np.full((3, 4), 0.9), targets) == 0.0
