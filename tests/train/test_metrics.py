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
