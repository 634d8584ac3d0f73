"""Pseudo-subclasses: the LELP checks of ../shared/LELP.md plus the baselines' contracts."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.linalg import null_space as scipy_null_space
from scipy.special import softmax
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from lelp_studio.config import SubclassSpec
from lelp_studio.subclasses import (
    ClusterSubclasses,
    LatentSubclasses,
    LELPSubclasses,
    ManualSubclasses,
    class_ids,
    make_subclasser,
    recovery_scores,
    target_entropy,
    targets_from_coordinates,
)

# --------------------------------------------------------------------------- fixtures


def _blobs(n: int = 150, d: int = 7, C: int = 3, seed: int = 0):
    r = np.random.default_rng(seed)
    y = np.arange(n) % C
    r.shuffle(y)
    scales = np.linspace(3.0, 0.5, d)  # unequal variances, like real embeddings
    H = r.normal(size=(n, d)) * scales + 2.0 * y[:, None]
    W = r.normal(size=(C, d))
    Z = H @ W.T + r.normal(size=(n, C))
    return H, y, W, Z


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


OPTIONS = [
    {},
    {"rotate": False},
    {"standardize": False},
    {"null_space": False},
    {"projection": "random"},
    {"projection": "random", "null_space": False, "rotate": False},
    {"n_subclasses": [1, 3, 2]},
]


def _fit(blobs, **kw):
    H, y, W, _ = blobs
    kw.setdefault("n_subclasses", 3)
    return LELPSubclasses(**kw).fit(H, y, W)


# --------------------------------------------------------------------------- target invariants


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize(("tau", "beta"), [(1.0, 1.0), (4.0, 0.25), (0.3, 5.0)])
def test_targets_nonnegative_and_rows_sum_to_one(blobs, opts, tau, beta):
    sub = _fit(blobs, **opts)
    T = sub.targets(blobs[0], blobs[3], tau=tau, beta=beta)
    assert T.shape == (len(blobs[0]), sum(sub.sizes_))
    assert np.all(T >= 0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_class_block_sums_equal_teacher_probability(blobs, opts, tau):
    sub = _fit(blobs, **opts)
    T = sub.targets(blobs[0], blobs[3], tau=tau, beta=0.7)
    pc = softmax(blobs[3] / tau, axis=1)
    for c in range(3):
        block = T[:, sub.offsets_[c] : sub.offsets_[c + 1]]
        np.testing.assert_allclose(block.sum(axis=1), pc[:, c], atol=1e-12)


def test_large_logits_do_not_overflow(blobs):
    sub = _fit(blobs)
    T = sub.targets(blobs[0] * 1e4, blobs[3] * 1e4, tau=0.1, beta=0.01)
    assert np.all(np.isfinite(T))
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-9)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("opts", [{}, {"rotate": False}, {"projection": "random"}])
def test_W_V_is_zero_with_null_space(blobs, opts):
    sub = _fit(blobs, **opts)
    W = blobs[2]
    for V in sub.components_:
        assert np.abs(W @ V).max() < 1e-10


def test_W_V_is_not_zero_without_null_space():
    # Class variance is largest along W's first row, so plain PCA picks that direction.
    r = np.random.default_rng(1)
    H = r.normal(size=(200, 5)) * [6.0, 1.0, 1.0, 1.0, 1.0]
    y = np.arange(200) % 2
    W = np.array([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    plain = LELPSubclasses(n_subclasses=1, null_space=False, rotate=False).fit(H, y)
    proj = LELPSubclasses(n_subclasses=1, rotate=False).fit(H, y, W)
    assert all(np.abs(W @ V).max() > 0.9 for V in plain.components_)
    assert all(np.abs(W @ V).max() < 1e-10 for V in proj.components_)


@pytest.fixture(scope="module")
def digits_lr():
    """Digits (/16) with y = digit % 3 and a multinomial logistic regression's W (3, 64).

    Its rows sum to ~0, so W is rank 2 up to round-off (singular values ~ [8.9, 7.1, 1e-14]):
    an outside check where ``I - pinv(W) @ W`` left |W V_c| ~ 0.1.
    """
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, digit = load_digits(return_X_y=True)
    X, y = X / 16.0, digit % 3
    return X, y, LogisticRegression(max_iter=1000).fit(X, y).coef_


def _near_rank_deficient(dtype: type = np.float64):
    """300 x 64 noise in 3 classes and a W whose third row is -(first + second) + 1e-14."""
    r = np.random.default_rng(3)
    W = r.normal(size=(3, 64))
    W[2] = -(W[0] + W[1]) + 1e-14 * r.normal(size=64)
    return r.normal(size=(300, 64)), np.arange(300) % 3, W.astype(dtype)


@pytest.mark.parametrize("opts", [{}, {"rotate": False}, {"projection": "random"}])
def test_W_V_is_zero_for_a_near_rank_deficient_W(digits_lr, opts):
    X, y, W = digits_lr
    s = np.linalg.svd(W, compute_uv=False)
    assert s[-1] < 1e-12 * s[0]  # the premise: rank 2 up to round-off
    sub = LELPSubclasses(n_subclasses=3, **opts).fit(X, y, W)
    for V in sub.components_:
        assert np.abs(W @ V).max() < 1e-6 * s[0]


@pytest.mark.parametrize("source", ["digits", "synthetic", "synthetic float32"])
def test_projector_is_the_orthogonal_projector_onto_the_null_space_of_W(digits_lr, source):
    X, y, W = digits_lr if source == "digits" else _near_rank_deficient()
    if source.endswith("float32"):
        W = W.astype(np.float32)  # float32 round-off decides the rank: 2, not 3
    P = LELPSubclasses(n_subclasses=1).fit(X, y, W).projector_
    W64 = W.astype(np.float64)
    # numpy's matrix_rank rule in W's own dtype, the tolerance the projector promises.
    tol_rel = max(W.shape) * np.finfo(W.dtype).eps
    s_max = np.linalg.norm(W64, 2)
    np.testing.assert_allclose(P, P.T, atol=1e-14)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    assert np.linalg.norm(W64 @ P, 2) <= 1.01 * tol_rel * s_max
    # Independent references: numpy's rank and scipy's null-space basis.
    assert round(np.trace(P)) == W.shape[1] - np.linalg.matrix_rank(W) == 62
    N = scipy_null_space(W64, rcond=tol_rel)
    np.testing.assert_allclose(P, N @ N.T, atol=1e-10)


@pytest.mark.parametrize("opts", [{}, {"null_space": False}, {"n_subclasses": [1, 3, 2]}])
def test_rotation_leaves_subspace_unchanged(blobs, opts):
    rot = _fit(blobs, rotate=True, **opts)
    plain = _fit(blobs, rotate=False, **opts)
    for Vr, Vp, Q in zip(rot.components_, plain.components_, rot.rotations_, strict=True):
        np.testing.assert_allclose(Vr @ Vr.T, Vp @ Vp.T, atol=1e-10)
        np.testing.assert_allclose(Q @ Q.T, np.eye(Q.shape[0]), atol=1e-12)
        np.testing.assert_allclose(Vr.T @ Vr, np.eye(Vr.shape[1]), atol=1e-10)
    assert not np.allclose(rot.components_[1], plain.components_[1])


def test_same_seed_same_targets_different_seed_different_rotation(blobs):
    a = _fit(blobs, random_state=7).targets(blobs[0], blobs[3])
    b = _fit(blobs, random_state=7).targets(blobs[0], blobs[3])
    np.testing.assert_array_equal(a, b)
    r1, r2 = _fit(blobs, random_state=1), _fit(blobs, random_state=2)
    assert not np.allclose(r1.rotations_[0], r2.rotations_[0])
    assert not np.allclose(r1.targets(blobs[0], blobs[3]), r2.targets(blobs[0], blobs[3]))


@pytest.mark.parametrize("opts", [{}, {"projection": "random"}, {"null_space": False}])
def test_class_randomness_depends_only_on_seed_and_class(blobs, opts):
    # Changing S of class 0 must not change class 1's (or 2's) rotation, directions, targets.
    H, y, W, Z = blobs
    a = LELPSubclasses(n_subclasses=[2, 4, 1], **opts).fit(H, y, W)
    b = LELPSubclasses(n_subclasses=[3, 4, 1], **opts).fit(H, y, W)
    for c in (1, 2):
        np.testing.assert_allclose(a.rotations_[c], b.rotations_[c], rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.components_[c], b.components_[c], rtol=0, atol=1e-12)
    Ta, Tb = a.targets(H, Z), b.targets(H, Z)
    block_a, block_b = Ta[:, a.offsets_[1] : a.offsets_[2]], Tb[:, b.offsets_[1] : b.offsets_[2]]
    np.testing.assert_allclose(block_a[y == 1], block_b[y == 1], rtol=1e-10, atol=0)
    np.testing.assert_allclose(block_a, block_b, rtol=1e-10, atol=0)  # other rows too


def test_random_projection_changes_with_seed_and_stays_orthonormal(blobs):
    a, b = _fit(blobs, projection="random", random_state=1), _fit(blobs, projection="random")
    V = a.components_[0]
    np.testing.assert_allclose(V.T @ V, np.eye(3), atol=1e-10)
    assert not np.allclose(V @ V.T, b.components_[0] @ b.components_[0].T)


# --------------------------------------------------------------------------- hand-computed


def _hand_data():
    # Class 0: PCs e1 (scatter 8), e2 (2); class 1 (mean (10, 0)): PCs e2 (18), e1 (2).
    H = np.array(
        [[2.0, 0], [-2, 0], [0, 1], [0, -1], [11, 0], [9, 0], [10, 3], [10, -3]],
    )
    return H, np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_hand_computed_pca_and_targets():
    H, y = _hand_data()
    sub = LELPSubclasses(n_subclasses=2, null_space=False, rotate=False, standardize=False)
    sub.fit(H, y)
    np.testing.assert_allclose(sub.components_[0], np.eye(2), atol=1e-12)
    np.testing.assert_allclose(sub.components_[1], [[0, 1], [1, 0]], atol=1e-12)
    np.testing.assert_allclose(sub.explained_variance_[0], [8 / 3, 2 / 3])
    np.testing.assert_allclose(sub.explained_variance_ratio_[1], [0.9, 0.1])
    x, Z = H[:1], np.array([[0.0, math.log(3.0)]])  # teacher p = (0.25, 0.75)
    # z_0(x) = (2, 0); z_1(x) = ((2, 0) - (10, 0)) @ [e2, e1] = (0, -8)
    e2, e8 = math.exp(2), math.exp(-8)
    expected = [0.25 * e2 / (e2 + 1), 0.25 / (e2 + 1), 0.75 / (1 + e8), 0.75 * e8 / (1 + e8)]
    np.testing.assert_allclose(sub.targets(x, Z, tau=1.0, beta=1.0)[0], expected, rtol=1e-12)
    # beta = 2 halves the coordinates; tau = 2 gives p = (1, sqrt 3) / (1 + sqrt 3)
    e1, e4 = math.exp(1), math.exp(-4)
    p0 = 1 / (1 + math.sqrt(3))
    expected2 = [p0 * e1 / (e1 + 1), p0 / (e1 + 1), (1 - p0) / (1 + e4), (1 - p0) * e4 / (1 + e4)]
    np.testing.assert_allclose(sub.targets(x, Z, tau=2.0, beta=2.0)[0], expected2, rtol=1e-12)
    # argmax of own-class coordinates: (2,0) (-2,0) (0,1) (0,-1) | (0,1) (0,-1) (3,0) (-3,0)
    assert sub.assign(H, y).tolist() == [0, 1, 1, 0, 3, 2, 2, 3]


def test_hand_computed_standardize_scales():
    H, y = _hand_data()
    sub = LELPSubclasses(n_subclasses=2, null_space=False, rotate=False).fit(H, y)
    np.testing.assert_allclose(sub.scales_[0], [math.sqrt(2), math.sqrt(0.5)])
    np.testing.assert_allclose(sub.scales_[1], [math.sqrt(4.5), math.sqrt(0.5)])
    np.testing.assert_allclose(sub.coordinates(H[:1])[0], [[2 / math.sqrt(2), 0.0]])


def test_directions_pick_the_right_pcs():
    r = np.random.default_rng(3)
    H = r.normal(size=(800, 4)) * [5.0, 3.0, 2.0, 1.0]
    y = np.arange(800) % 2
    sub = LELPSubclasses(
        n_subclasses=1, directions=[[2, 0], None], null_space=False, rotate=False
    ).fit(H, y)
    assert sub.sizes_ == [2, 1]
    V0, V1 = sub.components_
    assert V0[2, 0] > 0.98 and V0[0, 1] > 0.98  # PC 2 = e3, PC 0 = e1, signs positive
    assert V1[0, 0] > 0.98


def test_per_class_n_subclasses(blobs):
    sub = _fit(blobs, n_subclasses=[1, 3, 2])
    assert sub.sizes_ == [1, 3, 2]
    assert sub.offsets_.tolist() == [0, 1, 4, 6]
    assert [V.shape for V in sub.components_] == [(7, 1), (7, 3), (7, 2)]
    assert [z.shape[1] for z in sub.coordinates(blobs[0])] == [1, 3, 2]
    assert len(sub.subclass_names_) == 6


@pytest.mark.parametrize("opts", [{}, {"rotate": False}, {"projection": "random"}])
def test_standardize_gives_unit_std_on_class_examples(blobs, opts):
    H, y, _, _ = blobs
    sub = _fit(blobs, **opts)
    coords = sub.coordinates(H)
    for c in range(3):
        zc = coords[c][y == c]
        np.testing.assert_allclose(zc.std(axis=0), 1.0, atol=1e-10)
        np.testing.assert_allclose(zc.mean(axis=0), 0.0, atol=1e-10)


def test_explained_variance_spectra(blobs):
    sub = _fit(blobs)
    plain = _fit(blobs, null_space=False)
    for c in range(3):
        np.testing.assert_allclose(sub.explained_variance_ratio_[c].sum(), 1.0)
        np.testing.assert_allclose(sub.explained_variance_ratio_raw_[c].sum(), 1.0)
        assert np.all(np.diff(sub.explained_variance_ratio_[c]) <= 1e-15)
        # W has 3 rows: the projected spectrum loses 3 directions, the raw one does not.
        assert np.sum(sub.explained_variance_ratio_[c] > 1e-9) == 7 - 3
        np.testing.assert_allclose(
            sub.explained_variance_ratio_raw_[c], plain.explained_variance_ratio_[c]
        )


# --------------------------------------------------------------------------- chunks, dtypes


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_in_memory(blobs, dtype, chunk):
    H, _, _, Z = blobs
    sub = _fit(blobs)
    Hd = H.astype(dtype)
    whole = sub.targets(Hd, Z, tau=2.0, beta=0.5)
    part = sub.targets(Hd, Z, tau=2.0, beta=0.5, chunk_size=chunk)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(part, whole, atol=tol)
    for a, b in zip(sub.coordinates(Hd, chunk_size=chunk), sub.coordinates(Hd), strict=True):
        np.testing.assert_allclose(a, b, atol=tol * 10)
    assert whole.dtype == (np.float64 if dtype == np.float64 else np.float32)


def test_float16_memmap_fit_and_targets(blobs, tmp_path):
    H, y, W, Z = blobs
    mm = np.lib.format.open_memmap(tmp_path / "h.npy", mode="w+", dtype=np.float16, shape=H.shape)
    mm[:] = H
    mm.flush()
    ro = np.load(tmp_path / "h.npy", mmap_mode="r")
    a = LELPSubclasses(n_subclasses=3).fit(ro, y, W)
    b = LELPSubclasses(n_subclasses=3).fit(np.asarray(ro, dtype=np.float64), y, W)
    for Va, Vb in zip(a.components_, b.components_, strict=True):
        np.testing.assert_allclose(Va, Vb, atol=1e-9)
    np.testing.assert_allclose(
        a.targets(ro, Z, chunk_size=32), b.targets(np.asarray(ro, np.float32), Z), atol=1e-5
    )


def test_targets_from_coordinates_equals_targets(blobs):
    H, _, _, Z = blobs
    sub = _fit(blobs, n_subclasses=[2, 3, 1])
    coords = sub.coordinates(H)
    for tau, beta in [(1.0, None), (3.0, 0.2)]:
        direct = sub.targets(H, Z, tau=tau, beta=beta)
        split = targets_from_coordinates(coords, Z, tau=tau, beta=beta or sub.beta)
        np.testing.assert_array_equal(direct, split)


def test_targets_from_coordinates_hand_case():
    T = targets_from_coordinates(
        [np.array([[math.log(3.0), 0.0]]), np.zeros((1, 1))], np.array([[0.0, 0.0]])
    )
    np.testing.assert_allclose(T, [[0.375, 0.125, 0.5]])


def test_assign_is_argmax_of_own_class_coordinates(blobs):
    H, y, _, _ = blobs
    sub = _fit(blobs, n_subclasses=[2, 3, 2])
    coords = sub.coordinates(H)
    a = sub.assign(H, y)
    expected = [sub.offsets_[c] + int(np.argmax(coords[c][i])) for i, c in enumerate(y)]
    assert a.tolist() == expected


def test_targets_fast_for_100k_rows():
    r = np.random.default_rng(0)
    d, n = 384, 100_000
    W = r.normal(size=(2, d))
    H = r.standard_normal((n, d), dtype=np.float32)
    Z = (H @ W.T.astype(np.float32)).astype(np.float32)
    sub = LELPSubclasses(n_subclasses=8).fit(H[:2000], np.arange(2000) % 2, W)
    sub.targets(H[:1000], Z[:1000])  # warm-up
    t0 = time.perf_counter()
    T = sub.targets(H, Z, tau=2.0, beta=0.5)
    elapsed = time.perf_counter() - t0
    assert T.shape == (n, 16)
    assert elapsed < 2.0, f"targets for 100k rows took {elapsed:.2f} s (budget 0.2 s on 2 cores)"


# --------------------------------------------------------------------------- validation


def _err_cases():
    H, y, W, _ = _blobs()
    Hn = H.copy()
    Hn[3, 2] = np.nan
    return [
        (
            "S too large",
            lambda: LELPSubclasses(n_subclasses=60).fit(H, y, W),
            r"class 0 has 50 examples and d=7, so at most 7 .*requested S=60: lower n_subclasses",
        ),
        (
            "S above null rank",
            lambda: LELPSubclasses(n_subclasses=5).fit(H, y, W),
            r"class 0: its 50 embeddings after the null-space projection span only 4 directions",
        ),
        ("beta zero", lambda: LELPSubclasses(beta=0).fit(H, y, W), r"beta must be > 0; got 0"),
        (
            "beta negative",
            lambda: LELPSubclasses(beta=-1.0).fit(H, y, W),
            r"beta must be > 0; got -1.0",
        ),
        ("nan in H", lambda: LELPSubclasses(n_subclasses=2).fit(Hn, y, W), r"H contains NaN"),
        (
            "W width",
            lambda: LELPSubclasses(n_subclasses=2).fit(H, y, W[:, :5]),
            r"W has 5 columns but H has 7",
        ),
        (
            "W rows fewer",
            lambda: LELPSubclasses(n_subclasses=2).fit(H, y, W[:2]),
            r"W has shape \(2, 7\) but y has 3 classes: pass the teacher's last-layer weight "
            r"of shape \(3, 7\), one row per class",
        ),
        (
            "W rows more",
            lambda: LELPSubclasses(n_subclasses=2).fit(H, y, np.vstack([W, W[:1]])),
            r"W has shape \(4, 7\) but y has 3 classes",
        ),
        (
            "H no columns",
            lambda: LELPSubclasses(null_space=False).fit(np.zeros((4, 0)), [0, 0, 1, 1]),
            r"H has no columns \(shape \(4, 0\)\); pass embeddings with at least one feature",
        ),
        (
            "H no rows",
            lambda: LELPSubclasses(null_space=False).fit(np.zeros((0, 3)), []),
            r"H has no rows \(shape \(0, 3\)\)",
        ),
        (
            "negative seed",
            lambda: LELPSubclasses(n_subclasses=2, random_state=-1).fit(H, y, W),
            r"random_state must be an int >= 0, a RandomState or None; got -1",
        ),
        (
            "no W",
            lambda: LELPSubclasses(n_subclasses=2).fit(H, y),
            r"null_space=True needs W.*set null_space=False",
        ),
        (
            "directions rank",
            lambda: LELPSubclasses(directions=[[0, 5], None, None]).fit(H, y, W),
            r"directions\[0\]=\[0, 5\] has an index >= 4",
        ),
        (
            "directions random",
            lambda: LELPSubclasses(directions=[[0]] * 3, projection="random").fit(H, y, W),
            r"directions picks principal components, so it needs projection='pca'",
        ),
        (
            "projection",
            lambda: LELPSubclasses(projection="ica").fit(H, y, W),
            r"projection must be 'pca' or 'random'; got 'ica'",
        ),
        (
            "list length",
            lambda: LELPSubclasses(n_subclasses=[2, 2]).fit(H, y, W),
            r"n_subclasses has 2 entries but y has 3 classes",
        ),
        (
            "singleton class",
            lambda: LELPSubclasses(n_subclasses=1).fit(H[:4], [0, 0, 0, 1], W),
            r"class 1 has 1 example\(s\); LELP needs at least 2",
        ),
        (
            "missing class",
            lambda: LELPSubclasses(n_subclasses=1).fit(H[:4], [0, 0, 2, 2], W),
            r"class 1 has no examples in y",
        ),
        ("y length", lambda: LELPSubclasses().fit(H, y[:-1], W), r"y has 149 entries but H"),
        ("H 1-D", lambda: LELPSubclasses().fit(H[:, 0], y, W), r"2-D"),
    ]


@pytest.mark.parametrize(("name", "call", "match"), _err_cases(), ids=[c[0] for c in _err_cases()])
def test_validation_errors(name, call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_not_fitted_and_width_checks(blobs):
    with pytest.raises(NotFittedError):
        LELPSubclasses().coordinates(blobs[0])
    sub = _fit(blobs)
    with pytest.raises(ValueError, match=r"H has 5 columns but LELPSubclasses was fitted on 7"):
        sub.coordinates(blobs[0][:, :5])
    with pytest.raises(ValueError, match=r"Z has shape \(150, 2\) but expected \(150, 3\)"):
        sub.targets(blobs[0], blobs[3][:, :2])
    with pytest.raises(ValueError, match=r"tau must be > 0; got 0"):
        sub.targets(blobs[0], blobs[3], tau=0)
    with pytest.raises(ValueError, match=r"chunk_size must be >= 1"):
        sub.targets(blobs[0], blobs[3], chunk_size=0)


def test_constructor_only_stores_params(blobs):
    sub = LELPSubclasses(n_subclasses=[1, 2, 3], beta=-5, projection="nonsense")  # no checks yet
    assert sub.get_params()["beta"] == -5
    fitted = _fit(blobs)
    c = clone(fitted)
    assert c.get_params() == fitted.get_params()
    assert not hasattr(c, "sizes_")


# --------------------------------------------------------------------------- planted structure


def _planted(seed: int = 0, n_per: int = 50, d: int = 12, sigma: float = 0.5):
    """2 classes, 4 latent clusters each, placed along null-space directions of W."""
    r = np.random.default_rng(seed)
    W = r.normal(size=(2, d))
    N = scipy_null_space(W)
    shift = W[0] / np.linalg.norm(W[0])
    H, y, latent = [], [], []
    for c in range(2):
        basis = N[:, r.permutation(N.shape[1])[:4]]
        for k in range(4):
            H.append(r.normal(scale=sigma, size=(n_per, d)) + 6.0 * basis[:, k] + 3 * c * shift)
            y += [c] * n_per
            latent += [f"g{k}"] * n_per
    return np.vstack(H), np.array(y), np.array(latent), W


@pytest.fixture(scope="module")
def planted():
    return _planted()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lelp_recovers_planted_null_space_clusters(planted, seed):
    H, y, latent, W = planted
    sub = LELPSubclasses(n_subclasses=4, random_state=seed).fit(H, y, W)
    # The random rotation mixes the 4 planted directions, so the ARI varies with the seed:
    # over seeds 0..39 it ranges 0.48-0.9 (mean 0.70); chance is 0.
    assert recovery_scores(sub.assign(H, y), y, latent)["ari"] > 0.45


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_clustering_recovers_planted_clusters(planted, method):
    H, y, latent, W = planted
    sub = ClusterSubclasses(method=method, n_subclasses=4).fit(H, y, W)
    assert recovery_scores(sub.assign(H, y), y, latent)["ari"] > 0.9


@pytest.mark.slow  # ~20 s: numba compiles umap on first use
def test_umap_kmeans_runs_recovers_and_reuses_its_umap(planted, monkeypatch):
    pytest.importorskip("umap")
    H, y, latent, _ = planted
    sub = ClusterSubclasses(method="umap-kmeans", n_subclasses=4).fit(H, y)
    T = sub.targets(H[:20], np.zeros((20, 2)))
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    a = sub.assign(H, y)
    assert recovery_scores(a, y, latent)["ari"] > 0.9
    # assign places each row by its own class only: the same as every class's nearest centroid
    np.testing.assert_array_equal(a, _own_class_codes(sub, H, y))
    # another S reuses the UMAP models (S does not enter them): no UMAP fit, same k-means
    monkeypatch.setattr(ClusterSubclasses, "_umap", _no_refit)
    again = ClusterSubclasses(method="umap-kmeans", n_subclasses=4).fit(
        H, y, structure=sub.structure_
    )
    for c1, c2 in zip(sub.centers_, again.centers_, strict=True):
        np.testing.assert_array_equal(c1, c2)
    assert ClusterSubclasses("umap-kmeans", 3).fit(H, y, structure=sub.structure_).sizes_ == [3, 3]


def _no_refit(*args, **kw):
    raise AssertionError("the structure was given: UMAP must not be fitted again")


def _own_class_codes(sub, H, y):
    """``assign``'s definition through the codes of every class (what it did before)."""
    codes = np.stack(sub._codes(np.asarray(H), chunk_size=None))
    return sub.offsets_[y] + codes[y, np.arange(len(y))]


@pytest.mark.parametrize("n_clusters", [1, 2, 3, 5])
def test_ward_cut_gives_agglomerative_clusterings_partition(n_clusters):
    from sklearn.cluster import AgglomerativeClustering, ward_tree

    from lelp_studio.subclasses import ward_cut

    X = np.random.default_rng(n_clusters).normal(size=(80, 4))
    got = ward_cut(ward_tree(X)[0], len(X), n_clusters)
    ref = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(X)
    # the same partition, numbered by first row: relabel the reference the same way
    _, first, inv = np.unique(ref, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    np.testing.assert_array_equal(got, rank[inv])
    assert got[0] == 0 and set(got) == set(range(n_clusters))


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_cluster_structure_reused_at_another_S_equals_a_fresh_fit(method, monkeypatch):
    H, y, _, _ = _blobs(n=300)
    first = ClusterSubclasses(method, n_subclasses=2, max_samples=60, random_state=5).fit(H, y)
    fresh = ClusterSubclasses(method, n_subclasses=4, max_samples=60, random_state=5).fit(H, y)
    if method == "agglomerative":  # the tree is not built again
        import sklearn.cluster

        monkeypatch.setattr(sklearn.cluster, "ward_tree", _no_refit)
    reused = ClusterSubclasses(method, n_subclasses=4, max_samples=60, random_state=5).fit(
        H, y, structure=first.structure_
    )
    for a, b in zip(fresh.centers_, reused.centers_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fresh.assign(H, y), reused.assign(H, y))


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_cluster_assign_places_rows_by_their_own_class(method):
    H, y, _, _ = _blobs(n=200)
    sub = ClusterSubclasses(method, n_subclasses=3, max_samples=50).fit(H, y)
    want = _own_class_codes(sub, H, y)
    np.testing.assert_array_equal(sub.assign(H, y), want)
    np.testing.assert_array_equal(sub.assign(H, y, chunk_size=7), want)  # across blocks


def test_structure_of_another_fit_is_refused():
    H, y, _, _ = _blobs(n=120)
    other = ClusterSubclasses("agglomerative", 2, random_state=1).fit(H, y).structure_
    with pytest.raises(ValueError, match=r"structure was made by another fit .*random_state"):
        ClusterSubclasses("agglomerative", 2, random_state=2).fit(H, y, structure=other)
    with pytest.raises(ValueError, match=r"structure was made by another fit"):
        ClusterSubclasses("kmeans", 2, random_state=1).fit(H, y, structure=other)


def test_oracle_recovers_exactly(planted):
    H, y, latent, _ = planted
    sub = LatentSubclasses().fit(H, y, latent=latent)
    scores = recovery_scores(sub.assign(H, y), y, latent)
    assert scores["ari"] == 1.0 and scores["nmi"] == pytest.approx(1.0)
    assert sub.sizes_ == [4, 4]
    assert sub.subclass_names_[:2] == ["0/g0", "0/g1"]


# --------------------------------------------------------------------------- hard targets


def _hard_models(planted):
    H, y, latent, W = planted
    ids = np.unique(latent, return_inverse=True)[1]
    return [
        ("kmeans", ClusterSubclasses(n_subclasses=4).fit(H, y, W), {}),
        ("oracle", LatentSubclasses(values=latent).fit(H, y, W), {}),
        ("manual", ManualSubclasses(ids).fit(H, y), {}),
    ]


@pytest.mark.parametrize("idx", [0, 1, 2])
@pytest.mark.parametrize("smooth", [0.0, 0.2])
def test_hard_targets_sum_to_one_and_put_mass_on_the_subclass(planted, idx, smooth):
    H, y, _, _ = planted
    name, sub, kw = _hard_models(planted)[idx]
    sub.set_params(smooth=smooth)
    Z = np.random.default_rng(0).normal(size=(len(H), 2)) * 3
    tau = 2.0
    T = sub.targets(H, Z, tau=tau, **kw)
    np.testing.assert_array_equal(sub.targets(H, Z, tau=tau, chunk_size=17, **kw), T)
    pc = softmax(Z / tau, axis=1)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(T >= 0)
    a = sub.assign(H, y)
    rows = np.arange(len(H))
    np.testing.assert_allclose(T[rows, a], pc[rows, y] * (1 - smooth + smooth / 4), atol=1e-12)
    for c in range(2):
        block = T[:, sub.offsets_[c] : sub.offsets_[c + 1]]
        np.testing.assert_allclose(block.sum(axis=1), pc[:, c], atol=1e-12)
        # the remaining entries of the block hold only the smoothing share
        assert np.sum(block > pc[:, [c]] * smooth / 4 + 1e-12) == len(H)


def test_manual_rest_subclass_and_new_rows():
    H = np.array([[0.0, 0], [0.1, 0], [5, 5], [5, 5.1], [9, 9], [9, 9.2]])
    y = np.array([0, 0, 0, 0, 1, 1])
    groups = np.array([7, 7, -1, -1, 3, 3])
    sub = ManualSubclasses(groups).fit(H, y)
    assert sub.sizes_ == [2, 1]
    assert sub.subclass_names_ == ["0/7", "0/rest", "1/3"]
    assert sub.assign(H, y).tolist() == [0, 0, 1, 1, 2, 2]
    # new rows: group 7 keeps its subclass; an unknown group goes to the nearest centroid
    new = np.array([[5.0, 5.0], [0.0, 0.0]])
    assert sub.assign(new, [0, 0], assignment=[7, 42]).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"assignment=None means 'the rows given to fit'"):
        sub.assign(new, [0, 0])
    with pytest.raises(ValueError, match=r"integer group ids >= 0, or -1"):
        ManualSubclasses(np.array([0, -2, 0, 0, 0, 0])).fit(H, y)


def test_latent_targets_for_new_rows():
    H = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    sub = LatentSubclasses().fit(H, y, latent=["a", "b", "a", "a"])
    T = sub.targets(np.array([[0.0]]), np.array([[0.0, 0.0]]), latent=["b"])
    np.testing.assert_allclose(T, [[0.0, 0.5, 0.5]])


def test_cluster_validation():
    H, y, W, _ = _blobs()
    with pytest.raises(ValueError, match=r"class 0 has 3 examples, fewer than the requested S=4"):
        ClusterSubclasses(n_subclasses=4).fit(H[:6], np.array([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"method must be one of"):
        ClusterSubclasses(method="dbscan").fit(H, y)
    with pytest.raises(ValueError, match=r"smooth must be in \[0, 1\); got 1.0"):
        ClusterSubclasses(smooth=1.0).fit(H, y)


def test_agglomerative_samples_large_classes():
    H, y, _, _ = _blobs(n=300)
    sub = ClusterSubclasses("agglomerative", n_subclasses=3, max_samples=40).fit(H, y)
    assert [C.shape for C in sub.centers_] == [(3, 7)] * 3
    assert set(np.unique(sub.assign(H, y))) <= set(range(9))


# --------------------------------------------------------------------------- factory, helpers


@pytest.mark.parametrize(
    ("method", "cls", "attrs"),
    [
        ("lelp", LELPSubclasses, {"rotate": True, "projection": "pca"}),
        ("pca", LELPSubclasses, {"rotate": False, "projection": "pca"}),
        ("random", LELPSubclasses, {"projection": "random", "directions": None}),
        ("kmeans", ClusterSubclasses, {"method": "kmeans"}),
        ("agglomerative", ClusterSubclasses, {"method": "agglomerative"}),
        ("umap-kmeans", ClusterSubclasses, {"method": "umap-kmeans"}),
        ("oracle", LatentSubclasses, {}),
        ("manual", ManualSubclasses, {}),
    ],
)
def test_make_subclasser(method, cls, attrs):
    spec = SubclassSpec(method=method, n_subclasses=3, beta=0.5, seed=4, directions=[[0], [1]])
    sub = make_subclasser(spec, latent=np.zeros(3), manual=np.zeros(3, dtype=int))
    assert type(sub) is cls
    for k, v in attrs.items():
        assert getattr(sub, k) == v
    if cls is LELPSubclasses:
        assert (sub.beta, sub.random_state, sub.n_subclasses) == (0.5, 4, 3)


def test_make_subclasser_missing_inputs():
    with pytest.raises(ValueError, match=r"latent column 'domain'"):
        make_subclasser(SubclassSpec(method="oracle", latent_col="domain"))
    with pytest.raises(ValueError, match=r"method 'manual' needs a group id"):
        make_subclasser(SubclassSpec(method="manual"))


def test_class_ids():
    Z = np.array([[0.0, 1.0], [2.0, 1.0]])
    assert class_ids([0, 0], Z, "label").tolist() == [0, 0]
    assert class_ids([0, 0], Z, "teacher").tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"class_source must be 'label' or 'teacher'"):
        class_ids([0, 0], Z, "votes")


def test_recovery_scores_hand_case():
    y = np.array([0, 0, 0, 0, 1, 1])
    assign = np.array([0, 0, 1, 1, 2, 3])
    latent = np.array(["a", "a", "b", "b", "x", "x"])
    s = recovery_scores(assign, y, latent)
    assert s["per_class"]["0"] == {"ari": 1.0, "nmi": 1.0, "n": 4}
    assert s["per_class"]["1"]["ari"] == 0.0
    assert s["ari"] == pytest.approx(4 / 6)


def test_target_entropy():
    T = np.array([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(target_entropy(T), [0.0, math.log(4)])


# --------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(20, 60),
    d=st.integers(3, 8),
    C=st.integers(2, 3),
    S=st.integers(1, 2),
    tau=st.floats(0.1, 5.0),
    beta=st.floats(0.1, 5.0),
    null_space=st.booleans(),
    rotate=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_property_targets_are_distributions(n, d, C, S, tau, beta, null_space, rotate, seed):
    assume(not null_space or d - C >= S)
    r = np.random.default_rng(seed)
    H = r.normal(size=(n, d)) * r.uniform(0.1, 10.0)
    y = r.permutation(np.arange(n) % C)
    W = r.normal(size=(C, d))
    Z = r.normal(size=(n, C)) * 5
    sub = LELPSubclasses(n_subclasses=S, null_space=null_space, rotate=rotate, random_state=seed)
    T = sub.fit(H, y, W if null_space else None).targets(H, Z, tau=tau, beta=beta)
    assert np.all(np.isfinite(T)) and np.all(T >= 0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-10)
    pc = softmax(Z / tau, axis=1)
    for c in range(C):
        np.testing.assert_allclose(T[:, c * S : (c + 1) * S].sum(axis=1), pc[:, c], atol=1e-10)


@pytest.mark.parametrize("null_space", [True, False])
@pytest.mark.parametrize("n_subclasses", [1, 3, [2, 4]])
def test_fit_with_precomputed_class_stats_equals_plain_fit(
    null_space: bool, n_subclasses: int | list[int]
) -> None:
    """The Subspaces page reuses one ClassStats across S / seed changes: same result."""
    from lelp_studio.subclasses import class_statistics

    rng = np.random.default_rng(3)
    H = rng.normal(size=(120, 10))
    y = np.repeat([0, 1], 60)
    W = rng.normal(size=(2, 10))
    stats = class_statistics(H, y)
    kw = dict(n_subclasses=n_subclasses, null_space=null_space, random_state=5)
    plain = LELPSubclasses(**kw).fit(H, y, W)
    cached = LELPSubclasses(**kw).fit(H, y, W, class_stats=stats)
    Z = rng.normal(size=(120, 2))
    np.testing.assert_allclose(cached.targets(H, Z), plain.targets(H, Z), rtol=1e-10)
    # The memo is reused: a second fit with another S adds no eigen-decomposition.
    n_eig = len(stats._memo)
    LELPSubclasses(n_subclasses=2, null_space=null_space).fit(H, y, W, class_stats=stats)
    assert len(stats._memo) == n_eig


def test_class_stats_from_other_data_are_refused() -> None:
    from lelp_studio.subclasses import SubclassError, class_statistics

    rng = np.random.default_rng(0)
    H = rng.normal(size=(40, 6))
    y = np.repeat([0, 1], 20)
    stats = class_statistics(H[:30], y[:30])
    with pytest.raises(SubclassError, match="class_stats were computed on other data"):
        LELPSubclasses(n_subclasses=2, null_space=False).fit(H, y, class_stats=stats)
