"""Metrics on tiny hand-computed cases (core/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lelp_studio import metrics as M

# 4 examples, 2 classes: confidences 0.9, 0.8, 0.7, 0.6; predictions 0, 0, 1, 0; y 0, 1, 1, 0.
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
Y = np.array([0, 1, 1, 0])


def test_softmax_is_stable_and_normalised():
    p = M.softmax(np.array([[1000.0, 1000.0 + math.log(3.0)], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(M.softmax(np.array([[0.0, 2.0]]), T=2.0), M.softmax([[0.0, 1.0]]))


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (np.array([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]]), 100 / 3),
        (np.array([0, 1, 0]), 100 / 3),
        (np.array([0, 0, 1]), 100.0),
    ],
)
def test_accuracy_hand_values(scores, expected):
    assert M.accuracy(scores, [0, 0, 1]) == pytest.approx(expected)


def test_agreement_hand_value():
    s = np.array([[1.0, 0], [0, 1], [1, 0]])
    t = np.array([[2.0, 0], [1, 0], [0, 1]])
    assert M.agreement(s, t) == pytest.approx(100 / 3)
    assert M.agreement(t, t) == 100.0


def test_predictive_kl_zero_when_equal():
    z = np.random.default_rng(0).normal(size=(5, 3))
    assert M.predictive_kl(z, z) == pytest.approx(0.0, abs=1e-12)
    assert M.predictive_kl(z, z + 7.0) == pytest.approx(0.0, abs=1e-12)  # shift-invariant


@pytest.mark.parametrize(
    ("T", "p"),
    [(1.0, 0.25), (2.0, 1 / (1 + math.sqrt(3)))],  # teacher p(class 0) = 1 / (1 + 3^(1/T))
)
def test_predictive_kl_two_class_hand_value(T, p):
    teacher = np.array([[0.0, math.log(3.0)]])
    student = np.zeros((1, 2))  # q = (0.5, 0.5)
    expected = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert M.predictive_kl(teacher, student, T=T) == pytest.approx(expected, rel=1e-12)
    assert M.predictive_kl(teacher, student, T=1.0) == pytest.approx(0.1308121, abs=1e-6)


def test_ece_hand_value():
    # 5 bins (lo, hi]: bin4 {0.9 correct}, bin3 {0.8 wrong, 0.7 correct}, bin2 {0.6 correct}
    # ECE = (|1 - 0.9| + |1 - 1.5| + |1 - 0.6|) / 4 = 0.25
    assert M.ece(PROBS, Y, n_bins=5) == pytest.approx(0.25)


def test_ece_zero_when_calibrated_and_rejects_logits():
    assert M.ece(np.array([[0.5, 0.5], [0.5, 0.5]]), [0, 1]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"pass softmax\(logits\), not logits"):
        M.ece(np.array([[3.0, -1.0]]), [0])


def test_reliability_curve_hand_values():
    r = M.reliability_curve(PROBS, Y, n_bins=5)
    np.testing.assert_allclose(r["bin_centers"], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert r["counts"].tolist() == [0, 0, 1, 2, 1]
    np.testing.assert_allclose(r["accuracy"], [np.nan, np.nan, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(r["confidence"], [np.nan, np.nan, 0.6, 0.75, 0.9])


def test_per_subclass_accuracy():
    pred, y, latent = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ["a", "a", "b", "b"]
    assert M.per_subclass_accuracy(pred, y, latent) == {"a": 100.0, "b": 50.0}
    assert M.per_subclass_accuracy(pred, y, latent, by_class=True) == {
        "0/a": 100.0,
        "0/b": 50.0,
        "1/a": 100.0,
    }


def test_confusion():
    C = M.confusion(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2)
    assert C.tolist() == [[2, 1], [0, 1]]
    with pytest.raises(ValueError, match=r"class ids must lie in 0..1"):
        M.confusion(np.array([2]), np.array([0]), 2)


def test_summarize():
    student = np.log(PROBS)
    teacher = np.array([[2.0, 0], [0, 2], [0, 2], [0, 2]])  # argmax 0, 1, 1, 1
    s = M.summarize(student, teacher, Y, latent={"domain": ["x", "x", "y", "y"]})
    assert s["accuracy"] == 75.0
    assert s["teacher_accuracy"] == 75.0
    assert s["agreement"] == 50.0
    assert s["kl"] > 0
    assert s["ece"] == pytest.approx(M.ece(PROBS, Y))
    assert s["per_subclass"] == {"domain": {"x": 50.0, "y": 100.0}}
    assert s["worst_subclass_accuracy"] == 50.0
    assert "per_subclass" not in M.summarize(student, teacher, Y)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.accuracy(np.zeros((3, 2)), [0, 1]), r"y has 2 entries but the predictions"),
        (lambda: M.predictive_kl(np.zeros((2, 2)), np.zeros((2, 3))), r"differ"),
        (lambda: M.softmax([[0.0]], T=0), r"T must be > 0"),
        (lambda: M.ece(PROBS, Y, n_bins=0), r"n_bins must be >= 1"),
        (lambda: M.accuracy(np.full((1, 2), np.nan), [0]), r"contains NaN"),
    ],
)
def test_metric_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_L3 = np.array([[2.0, 0, 0], [0, 2, 0]])  # argmax 0, 1; three classes
_L2 = np.array([[2.0, 0], [0, 2]])  # argmax 0, 1; two classes


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # One score per row is not a class id: used to score as ids (0, 0) -> 50 %.
        (
            lambda: M.accuracy([0.7, 0.2], [1, 0]),
            r"logits_or_pred must hold integer class ids 0..C-1; got non-integer value 0.7: "
            r"pass ids as ints, or scores as an \(n, C\) array",
        ),
        (lambda: M.accuracy(np.array([1.0, np.nan]), [1, 0]), r"non-integer value nan"),
        (lambda: M.accuracy(_L2, [0.5, 1.0]), r"y must hold integer class ids.*value 0.5"),
        (lambda: M.accuracy(_L2, np.array(["0", "1"])), r"y must hold integer.*dtype <U1"),
        (lambda: M.agreement([0.9, 0.1], [0, 0]), r"student_logits must hold integer"),
        (lambda: M.per_subclass_accuracy([0.5, 1.0], [0, 1], ["a", "b"]), r"pred must hold"),
        (lambda: M.confusion([0.2, 1.0], [0, 1], 2), r"pred must hold integer class ids"),
        # Logits of different widths are different class sets, not comparable.
        (
            lambda: M.agreement(_L3, _L2),
            r"student logits have 3 columns but teacher logits have 2: pass class logits over "
            r"the same classes",
        ),
        (lambda: M.summarize(_L3, _L2, [0, 1]), r"3 columns but teacher logits have 2"),
        # A label no column scores.
        (
            lambda: M.accuracy(_L2, [0, 2]),
            r"y holds class ids 0..2 but the scores have 2 columns \(classes 0..1\)",
        ),
        (lambda: M.accuracy(_L2, [-1, 1]), r"y holds class ids -1..1 but the scores have 2"),
        (lambda: M.ece(np.array([[0.5, 0.5]]), [2]), r"y holds class ids 2..2"),
        (lambda: M.accuracy(np.zeros((2, 0)), [0, 1]), r"logits_or_pred has no columns"),
    ],
)
def test_metrics_refuse_what_they_used_to_truncate(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_metrics_accept_integer_valued_float_ids_and_int_labels():
    # Labels read back from a float column (1.0, 0.0) are ids; scikit-learn agrees.
    from sklearn.metrics import accuracy_score

    y = np.array([1.0, 0.0, 1.0])
    pred = np.array([1.0, 1.0, 1.0])
    assert M.accuracy(pred, y) == pytest.approx(100 * accuracy_score(y, pred))
    assert M.accuracy(np.array([[0.0, 1], [1, 0], [0, 1]]), y.astype(np.int64)) == 100.0
    assert M.agreement(np.array([1, 0], dtype=np.int32), np.array([[0.0, 1], [0, 1]])) == 50.0
    assert M.confusion(pred, y, 2).tolist() == [[0, 1], [0, 2]]
