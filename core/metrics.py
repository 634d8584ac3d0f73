"""Evaluation metrics: numpy in, plain floats (or small dicts) out, no torch.

Kept torch-free so the app, the CLI report and the benchmark tables can score stored logits
without loading a model. Percentages: ``accuracy``, ``agreement`` and per-subclass accuracy
are in %; ``ece`` and the reliability curve are fractions in [0, 1]; ``predictive_kl`` is in
nats. "Student logits" are class logits (already aggregated from subclasses, LELP.md step 7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax as _log_softmax

__all__ = [
    "accuracy",
    "agreement",
    "confusion",
    "ece",
    "per_subclass_accuracy",
    "predictive_kl",
    "reliability_curve",
    "softmax",
    "summarize",
]


def softmax(logits: Any, T: float = 1.0, axis: int = -1) -> np.ndarray:
    """Numerically stable ``softmax(logits / T)`` (float64).

    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(2).tolist()
    [[0.25, 0.75]]
    """
    if not T > 0:
        raise ValueError(f"T must be > 0; got {T!r}")
    return np.exp(_log_softmax(np.asarray(logits, dtype=np.float64) / T, axis=axis))


def _as_2d(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, C); got shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {a.shape}); pass one score per class")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def _ids(a: np.ndarray, name: str) -> np.ndarray:
    """Integer class ids from a 1-D array, refusing anything ``astype`` would truncate.

    Why: ``accuracy([0.7, 0.2], y)`` used to score the ids (0, 0); a 1-D float array is far
    more often one score per row than ids. Integer-valued floats (labels read back from a
    float column) are accepted, as scikit-learn's classifiers accept them.
    """
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    bad = f"dtype {a.dtype}"
    if a.dtype.kind == "f":
        bad = f"non-integer value {float(a[~(np.isfinite(a) & (a == np.round(a)))][0])}"
    raise ValueError(
        f"{name} must hold integer class ids 0..C-1; got {bad}: pass ids as ints, or scores "
        "as an (n, C) array (for one score per row, stack [-s, s] or threshold it)"
    )


def _pred(logits_or_pred: Any, name: str) -> np.ndarray:
    """Class predictions from logits/probabilities (n, C) or ready-made ids (n,)."""
    a = np.asarray(logits_or_pred)
    if a.ndim == 2:
        return np.argmax(_as_2d(a, name), axis=1)
    if a.ndim == 1:
        return _ids(a, name)
    raise ValueError(f"{name} must be (n, C) scores or (n,) class ids; got shape {a.shape}")


def _labels(y: Any, n: int, n_classes: int | None = None) -> np.ndarray:
    """Integer labels, one per prediction, within 0..C-1 when the scores' width C is known."""
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise ValueError(f"y has {len(y)} entries but the predictions have {n}")
    if n == 0:
        raise ValueError("no examples to score")
    y = _ids(y, "y")
    if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"y holds class ids {int(y.min())}..{int(y.max())} but the scores have {n_classes} "
            f"columns (classes 0..{n_classes - 1}): pass scores with one column per class"
        )
    return y


def _width(a: Any) -> int | None:
    """Column count of (n, C) scores; None for 1-D class ids."""
    shape = np.shape(a)
    return int(shape[1]) if len(shape) == 2 else None


def accuracy(logits_or_pred: Any, y: Any) -> float:
    """Top-1 accuracy in % from logits (n, C) or predicted ids (n,).

    >>> accuracy(np.array([[2.0, 1.0], [0.0, 1.0]]), [0, 0])
    50.0
    """
    p = _pred(logits_or_pred, "logits_or_pred")
    return float(100.0 * np.mean(p == _labels(y, len(p), _width(logits_or_pred))))


def agreement(student_logits: Any, teacher_logits: Any) -> float:
    """Top-1 agreement in %: how often the student's argmax equals the teacher's (Stanton et
    al. 2021 fidelity)."""
    s = _pred(student_logits, "student_logits")
    t = _pred(teacher_logits, "teacher_logits")
    if len(s) != len(t):
        raise ValueError(f"student has {len(s)} rows but teacher has {len(t)}")
    ws, wt = _width(student_logits), _width(teacher_logits)
    if ws is not None and wt is not None and ws != wt:
        raise ValueError(
            f"student logits have {ws} columns but teacher logits have {wt}: pass class "
            "logits over the same classes (aggregate subclass logits to classes first)"
        )
    return float(100.0 * np.mean(s == t))


def predictive_kl(teacher_logits: Any, student_logits: Any, T: float = 1.0) -> float:
    """Mean ``KL(softmax(t/T) || softmax(s/T))`` in nats (fidelity, Stanton et al. 2021).

    >>> predictive_kl(np.zeros((1, 2)), np.zeros((1, 2)))
    0.0
    """
    if not T > 0:
        raise ValueError(f"T must be > 0; got {T!r}")
    t = _as_2d(teacher_logits, "teacher_logits")
    s = _as_2d(student_logits, "student_logits")
    if t.shape != s.shape:
        raise ValueError(f"teacher logits {t.shape} and student logits {s.shape} differ")
    lt, ls = _log_softmax(t / T, axis=1), _log_softmax(s / T, axis=1)
    kl = np.sum(np.exp(lt) * (lt - ls), axis=1)
    return float(max(np.mean(kl), 0.0))


def _check_probs(probs: Any) -> np.ndarray:
    p = _as_2d(probs, "probs")
    if p.min() < -1e-6 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(
            "probs must be probabilities (non-negative rows summing to 1); "
            "pass softmax(logits), not logits"
        )
    return p


def _binned(probs: Any, y: Any, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-bin counts, accuracy sums and confidence sums; bins (lo, hi] (Guo et al. 2017)."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins!r}")
    p = _check_probs(probs)
    y = _labels(y, len(p), p.shape[1])
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(b, minlength=n_bins)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    return counts, acc_sum, conf_sum


def ece(probs: Any, y: Any, n_bins: int = 15) -> float:
    """Expected calibration error as a fraction in [0, 1]: ``sum_b n_b/n |acc_b - conf_b|``
    over equal-width confidence bins (lo, hi] (Guo et al. 2017).

    >>> ece(np.array([[0.9, 0.1], [0.9, 0.1]]), [0, 1], n_bins=10)
    0.4
    """
    counts, acc_sum, conf_sum = _binned(probs, y, n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / counts.sum())


def reliability_curve(probs: Any, y: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per confidence bin: ``bin_centers``, ``accuracy`` and ``confidence`` (fractions, NaN
    for empty bins) and ``counts``; the data of a reliability diagram."""
    counts, acc_sum, conf_sum = _binned(probs, y, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, acc_sum / counts, np.nan)
        conf = np.where(counts > 0, conf_sum / counts, np.nan)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    return {"bin_centers": centers, "accuracy": acc, "confidence": conf, "counts": counts}


def per_subclass_accuracy(
    pred: Any, y: Any, latent: Any, by_class: bool = False
) -> dict[str, float]:
    """Accuracy (%) of the rows sharing each latent value (e.g. each domain).

    Shows where a student loses accuracy that the overall figure hides. ``by_class=True``
    keys by ``"class/value"`` instead, one entry per (class, latent value) pair.
    """
    p = _pred(pred, "pred")
    y = _labels(y, len(p), _width(pred))
    v = np.asarray(latent).ravel()
    if len(v) != len(p):
        raise ValueError(f"latent has {len(v)} entries but the predictions have {len(p)}")
    keys = (
        np.char.add(np.char.add(y.astype(str), "/"), v.astype(str)) if by_class else v.astype(str)
    )
    correct = p == y
    return {str(k): float(100.0 * correct[keys == k].mean()) for k in np.unique(keys)}


def confusion(pred: Any, y: Any, C: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    p = _pred(pred, "pred")
    y = _labels(y, len(p))
    if p.size and (min(p.min(), y.min()) < 0 or max(p.max(), y.max()) >= C):
        raise ValueError(f"class ids must lie in 0..{C - 1} for C={C}")
    return np.bincount(y * C + p, minlength=C * C).reshape(C, C)


def summarize(
    student_logits: Any, teacher_logits: Any, y: Any, latent: Any = None
) -> dict[str, Any]:
    """The scores a run reports: ``accuracy``, ``teacher_accuracy``, ``agreement`` (%),
    ``kl`` (nats, teacher || student, T=1) and ``ece`` (fraction) of the student.

    ``latent``: an array (n,) or a dict ``{column: (n,) values}``; adds ``per_subclass``
    (``{column: {value: accuracy %}}``; an array is named ``"latent"``) and
    ``worst_subclass_accuracy`` (the lowest of them).
    """
    s = _as_2d(student_logits, "student_logits")
    t = _as_2d(teacher_logits, "teacher_logits")
    out: dict[str, Any] = {
        "accuracy": accuracy(s, y),
        "teacher_accuracy": accuracy(t, y),
        "agreement": agreement(s, t),
        "kl": predictive_kl(t, s),
        "ece": ece(softmax(s), y),
    }
    if latent is not None:
        cols = latent if isinstance(latent, dict) else {"latent": latent}
        per = {str(k): per_subclass_accuracy(s, y, v) for k, v in cols.items()}
        if per:
            out["per_subclass"] = per
            out["worst_subclass_accuracy"] = min(min(d.values()) for d in per.values())
    return out
