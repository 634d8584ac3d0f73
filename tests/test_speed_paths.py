"""Fast paths of issue 7 give the same numbers as the plain ones.

Tuned extraction (length-sorted, token-budgeted batches tokenised in background threads,
scattered into the output) must equal the naive loop row for row; fit on a float16 memmap
through the float32 block path must equal the exact float64 fit; outputs can be memmaps.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from lelp_studio import subclasses, teachers
from lelp_studio.subclasses import LELPSubclasses, SubclassError, targets_from_coordinates
from lelp_studio.teachers import TeacherError, extract, open_embedding_memmap
from lelp_studio.teachers import device as teacher_device
from lelp_studio.teachers import fingerprint as teacher_fp
from lelp_studio.teachers.extraction import _plan_batches, _token_lengths
from lelp_studio.teachers.minilm import _load_minilm, _minilm_fn

transformers = pytest.importorskip("transformers")

WORDS = (
    "the", "film", "was", "a", "quietly", "moving", ",", "funny", "and", "sometimes",
    "baffling", "piece", "of", "work",
)  # fmt: skip


def _varied_texts(n: int = 50, seed: int = 0) -> list[str]:
    """Lengths from empty to past max_length (truncation), in shuffled order, one repeated."""
    rng = np.random.default_rng(seed)
    lens = rng.permutation(np.r_[0, 1, 2, 200, rng.integers(3, 60, n - 4)])
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in lens]
    texts[7] = texts[31]  # a duplicate must get the same row wherever it sits
    return texts


@pytest.fixture(scope="module")
def minilm():
    encoder, tok = _load_minilm()
    encoder.eval()
    return _minilm_fn(encoder), tok


@pytest.fixture(scope="module")
def naive_rows(minilm):
    fn, tok = minilm
    texts = _varied_texts()
    (H,) = extract(fn, tok, texts, 64, 32, lambda *a: None, naive=True)
    return texts, H


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


BF16 = pytest.mark.skipif(
    not teachers.cpu_has_native_bf16(), reason="CPU bf16 is emulated (slow) on this CPU"
)


@pytest.mark.parametrize(
    "kw",
    [
        {},  # "auto": bf16 where this CPU has it natively, else float32
        {"precision": "float32"},
        {"token_budget": 96, "workers": 2, "precision": "float32"},  # many small batches
        # the CUDA feed: forked DataLoader workers tokenising small batches
        {"token_budget": 96, "workers": 2, "precision": "float32", "processes": True},
        pytest.param({"precision": "bf16"}, marks=BF16),
    ],
    ids=["auto", "float32", "small-batches", "processes", "bf16"],
)
def test_tuned_equals_naive_row_by_row(minilm, naive_rows, kw):
    fn, tok = minilm
    texts, H_naive = naive_rows
    (H,) = extract(fn, tok, texts, 64, 4, lambda *a: None, **kw)
    assert H.shape == H_naive.shape == (50, 384) and H.dtype == np.float32
    cos = _cosines(H, H_naive)
    bf16 = teachers.resolve_precision(kw.get("precision", "auto"), "cpu") == "bf16"
    assert cos.min() > (0.999 if bf16 else 0.99999), cos.min()
    # Row order: each row is far closer to its own naive row than to any other text's.
    sim = (H / np.linalg.norm(H, axis=1, keepdims=True)) @ (
        H_naive / np.linalg.norm(H_naive, axis=1, keepdims=True)
    ).T
    np.fill_diagonal(sim, -1.0)
    sim[7, 31] = sim[31, 7] = -1.0  # the planted duplicate
    assert (cos > sim.max(1)).all()
    np.testing.assert_allclose(H[7], H[31], atol=1e-5)


@pytest.mark.parametrize(
    ("precision", "device", "native", "expected"),
    [
        ("auto", "cpu", True, "bf16"),  # AVX512-BF16 / AMX: the fast path by default
        ("auto", "cpu", False, "float32"),  # emulated bf16 is slower than float32
        ("auto", "mps", True, "float32"),
        ("float32", "cpu", True, "float32"),  # an explicit choice is kept
        ("bf16", "cpu", False, "bf16"),
    ],
)
def test_resolve_precision(monkeypatch, precision, device, native, expected):
    monkeypatch.setattr(teacher_device, "cpu_has_native_bf16", lambda: native)
    assert teachers.resolve_precision(precision, device) == expected


@pytest.mark.parametrize("native", [True, False])
def test_cache_key_follows_resolved_precision(monkeypatch, native):
    """``auto`` shares its cache with the precision it resolves to here, never the other."""
    from lelp_studio.config import TeacherSpec

    monkeypatch.setattr(teacher_device, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(teacher_fp, "pick_device", lambda: torch.device("cpu"))
    fp = {
        p: teachers.teacher_fingerprint(TeacherSpec(precision=p))
        for p in ("auto", "float32", "bf16")
    }
    assert fp["float32"] != fp["bf16"]
    assert fp["auto"] == fp["bf16" if native else "float32"]


@pytest.mark.parametrize("processes", [False, True])
def test_tuned_keeps_order_exactly(minilm, processes):
    """The mask length of each row, read back through the model, is that text's own."""
    _, tok = minilm
    texts = _varied_texts(40, seed=3)
    (lengths,) = extract(
        lambda b: b["attention_mask"].sum(1, keepdim=True), tok, texts, 32, 2, lambda *a: None,
        token_budget=40, processes=processes, workers=2,
    )  # fmt: skip
    expected = [len(tok(t, truncation=True, max_length=32)["input_ids"]) for t in texts]
    np.testing.assert_array_equal(lengths[:, 0], expected)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_batches_cover_rows_once_longest_first(minilm, device):
    """CPU plans sort by exact token counts and respect the budget exactly; CUDA plans sort
    by characters (no extra tokenizer pass). The plan needs no GPU to be made."""
    _, tok = minilm
    texts = _varied_texts(50, seed=1)
    order, bounds = _plan_batches(tok, texts, 64, 4, torch.device(device), 120)
    np.testing.assert_array_equal(np.sort(order), np.arange(50))
    tokens = np.array(
        [len(tok(texts[i], truncation=True, max_length=64)["input_ids"]) for i in order]
    )
    key = tokens if device == "cpu" else np.array([len(texts[i]) for i in order])
    assert (np.diff(key) <= 0).all()
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == 50 and (sizes[:-1] >= 4).all()
    assert sizes.max() > sizes[0]  # short texts get bigger batches under the token budget
    if device == "cpu":  # rows x longest row <= budget, unless min_rows forces more
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            assert (b - a) * tokens[a] <= 120 or b - a == 4


def test_exact_token_lengths_match_the_tokenizer(minilm):
    _, tok = minilm
    texts = _varied_texts(40, seed=4)
    want = [len(tok(t, truncation=True, max_length=16)["input_ids"]) for t in texts]
    np.testing.assert_array_equal(_token_lengths(tok, texts, 16), want)


def test_writes_into_float16_memmap(minilm, naive_rows, tmp_path):
    fn, tok = minilm
    texts, H_naive = naive_rows
    out = open_embedding_memmap(tmp_path / "h.npy", len(texts), 384)
    (H,) = extract(fn, tok, texts, 64, 8, lambda *a: None, out=out, precision="float32")
    assert H is out
    out.flush()
    back = np.load(tmp_path / "h.npy", mmap_mode="r")
    assert back.dtype == np.float16 and back.shape == (50, 384)
    # float16 keeps about 3 significant digits of every value.
    np.testing.assert_allclose(back.astype(np.float32), H_naive, rtol=2e-3, atol=2e-4)


def test_two_outputs_with_one_given_array(minilm):
    _, tok = minilm
    texts = _varied_texts(40, seed=2)
    given = np.zeros((40, 1), dtype=np.float64)

    def fn(b):
        n_tok = b["attention_mask"].sum(1, keepdim=True).float()
        return n_tok, 2 * n_tok

    a, b = extract(fn, tok, texts, 32, 2, lambda *a: None, out=[given, None], token_budget=30)
    assert a is given and b.dtype == np.float32
    np.testing.assert_array_equal(b, 2 * a)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"out": np.zeros((3, 384), np.float32)}, r"out\[0\] has shape \(3, 384\) but output 0"),
        ({"precision": "fp8"}, r"precision must be 'auto', 'float32' or 'bf16'; got 'fp8'"),
    ],
)
def test_bad_arguments_are_named(minilm, kw, message):
    fn, tok = minilm
    with pytest.raises(TeacherError, match=message):
        extract(fn, tok, ["a b", "c"], 16, 2, lambda *a: None, **kw)


# --------------------------------------------------------------------------- LELP at scale


def _structured(n: int = 4000, d: int = 16, seed: int = 0):
    """Two interleaved classes with unequal, well separated variances (stable PCA)."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    H = r.normal(size=(n, d)) * np.linspace(3.0, 0.3, d) + 1.5 * y[:, None] + 40.0
    W = r.normal(size=(2, d))
    return H, y, W, H @ W.T


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small thresholds so the 1.6M-row code path (float32 blocks, output checks) runs here."""
    for mod in (subclasses.statistics, subclasses.lelp):  # where the thresholds are read
        monkeypatch.setattr(mod, "_FAST_FIT_ROWS", 100)
        monkeypatch.setattr(mod, "_FAST_CHUNK", 333)
    monkeypatch.setattr(subclasses.lelp, "_TARGET_CHUNK", 257)


def _memmap(tmp_path, H: np.ndarray) -> np.ndarray:
    mm = open_embedding_memmap(tmp_path / "h.npy", *H.shape)
    mm[:] = H
    mm.flush()
    return np.load(tmp_path / "h.npy", mmap_mode="r")


@pytest.mark.parametrize("kw", [{}, {"null_space": False, "rotate": False}])
def test_chunked_fit_on_float16_memmap_equals_in_memory(tmp_path, fast_path, kw):
    H, y, W, Z = _structured()
    ro = _memmap(tmp_path, H)
    big = LELPSubclasses(n_subclasses=3, **kw).fit(ro, y, W)
    ref = LELPSubclasses(n_subclasses=3, **kw).fit(np.asarray(ro, np.float64), y, W)
    for name in ("means_", "scales_", "explained_variance_ratio_"):
        for a, b in zip(getattr(big, name), getattr(ref, name), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(big.components_, ref.components_, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    T = big.targets(ro, Z, tau=2.0, beta=0.5)
    T_ref = ref.targets(np.asarray(ro, np.float64), Z, tau=2.0, beta=0.5)
    assert T.dtype == np.float32
    np.testing.assert_allclose(T, T_ref, atol=1e-5)
    np.testing.assert_allclose(T.sum(1), 1.0, atol=1e-5)


def test_beta_only_change_reuses_coordinates(tmp_path, fast_path):
    H, y, W, Z = _structured(1500)
    ro = _memmap(tmp_path, H)
    sub = LELPSubclasses(n_subclasses=2).fit(ro, y, W)
    coords = sub.coordinates(ro)
    for beta in (0.25, 3.0):
        np.testing.assert_allclose(
            targets_from_coordinates(coords, Z, 1.5, beta), sub.targets(ro, Z, 1.5, beta),
            atol=1e-6,
        )  # fmt: skip


def test_blocked_targets_match_log_space_formula(fast_path):
    """Eq. 5 computed block by block (257 rows) equals the direct log-space formula, even for
    coordinates and logits large enough to overflow a plain softmax."""
    r = np.random.default_rng(0)
    n = 1000
    coords = [r.normal(size=(n, 3)) * 300, r.normal(size=(n, 2))]
    Z = r.normal(size=(n, 2)) * 500
    T = targets_from_coordinates(coords, Z, tau=0.5, beta=0.1)
    lp = log_softmax(Z / 0.5, axis=1)
    ref = np.concatenate(
        [np.exp(log_softmax(z / 0.1, axis=1) + lp[:, [c]]) for c, z in enumerate(coords)], axis=1
    )
    assert np.isfinite(T).all()
    np.testing.assert_allclose(T, ref, atol=1e-12)


@pytest.mark.parametrize("where", ["fit", "targets"])
def test_nan_in_large_memmap_is_reported_with_rows(tmp_path, fast_path, where):
    H, y, W, Z = _structured(1000)
    sub = LELPSubclasses(n_subclasses=2).fit(H.astype(np.float32), y, W) if where != "fit" else None
    H = H.astype(np.float32)
    H[700, 3] = np.nan
    ro = _memmap(tmp_path, H)
    with pytest.raises(SubclassError, match=r"H contains NaN or infinity .*rows 666\.\.998"):
        if sub is None:
            LELPSubclasses(n_subclasses=2).fit(ro, y, W)
        else:
            sub.targets(ro, Z)


# ----------------------------------------------------------------- the product reads float16


def _f16_memmap(tmp_path, n: int, d: int, seed: int = 0):
    """A float16 memmap as the workspace stores H, its labels, logits and head."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    mm = open_embedding_memmap(tmp_path / "h16.npy", n, d)
    for s in range(0, n, 100_000):  # written in blocks, as extraction does
        e = min(n, s + 100_000)
        mm[s:e] = r.standard_normal((e - s, d), dtype=np.float32) + 0.5 * y[s:e, None]
    mm.flush()
    del mm
    H = np.load(tmp_path / "h16.npy", mmap_mode="r")
    W = r.normal(size=(2, d))
    Z = r.normal(size=(n, 2)).astype(np.float32)
    return H, y, W, Z


@pytest.mark.parametrize("method", ["lelp", "random", "kmeans", "agglomerative", "oracle"])
@pytest.mark.parametrize("n", [3000, 70_000])
def test_float16_memmap_gives_the_float32_copys_numbers(tmp_path, method, n):
    """fit_subclasser and the targets + assignment the pipeline and ``lelp subclasses`` use
    give bit-identical results on the stored float16 memmap and on its float32 copy (70,000
    rows: several target blocks, whose BLAS rounding must not depend on the input dtype)."""
    from lelp_studio.config import SubclassSpec
    from lelp_studio.subclasses import fit_subclasser, spec_targets, spec_targets_and_assignment

    if method in ("kmeans", "agglomerative") and n > 3000:
        pytest.skip("clustering 70,000 rows is slow and tests nothing the 3,000 rows do not")
    H16, y, W, Z = _f16_memmap(tmp_path, n, 24)
    H32 = np.asarray(H16, dtype=np.float32)
    latent = np.arange(n) % 3
    spec = SubclassSpec(method=method, n_subclasses=3)
    got = {}
    for name, H in (("f16", H16), ("f32", H32)):
        sub = fit_subclasser(spec, H, y, W=W, latent=latent)
        T, a = spec_targets_and_assignment(sub, spec, H, Z, 2.0, y)
        np.testing.assert_array_equal(T, spec_targets(sub, spec, H, Z, 2.0))
        np.testing.assert_array_equal(a, sub.assign(H, y))
        got[name] = (T, a, getattr(sub, "centers_", getattr(sub, "components_", None)))
    np.testing.assert_array_equal(got["f16"][0], got["f32"][0])
    np.testing.assert_array_equal(got["f16"][1], got["f32"][1])
    for c16, c32 in zip(got["f16"][2], got["f32"][2], strict=True):  # centroids, directions
        np.testing.assert_array_equal(c16, c32)


def test_lelp_fit_and_targets_on_float16_memmap_never_copy_h_as_float32(tmp_path):
    """LELP fit + targets + assignment over a 600,000 x 64 float16 memmap stay far below the
    153.6 MB a float32 copy of H takes (tracemalloc sees numpy's allocations; the memmap's
    pages are not allocations), and equal the float32 path."""
    import tracemalloc

    from lelp_studio.config import SubclassSpec
    from lelp_studio.subclasses import fit_subclasser, spec_targets_and_assignment

    n, d = 600_000, 64
    H16, y, W, Z = _f16_memmap(tmp_path, n, d)
    spec = SubclassSpec(method="lelp", n_subclasses=2)
    tracemalloc.start()
    try:
        sub = fit_subclasser(spec, H16, y, W=W)
        T, a = spec_targets_and_assignment(sub, spec, H16, Z, 1.0, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * n * d * 4, f"peak {peak / 1e6:.1f} MB: H was copied whole"
    H32 = np.asarray(H16, dtype=np.float32)
    ref = fit_subclasser(spec, H32, y, W=W)
    T32, a32 = spec_targets_and_assignment(ref, spec, H32, Z, 1.0, y)
    np.testing.assert_array_equal(T, T32)
    np.testing.assert_array_equal(a, a32)


@pytest.mark.parametrize("objective", ["fitnet", "sea", "compress", "reaugkd"])
def test_embedding_objectives_read_float16_rows_per_batch(tmp_path, objective):
    """Objectives that use teacher embeddings train on the float16 memmap exactly as on its
    float32 copy (rows cast per batch give the values of H cast whole), and keep no (n, d)
    float32 copy of H as a tensor."""
    from lelp_studio import objectives
    from lelp_studio.config import StudentSpec
    from lelp_studio.objectives import Batch, TeacherData
    from lelp_studio.students import build_student

    n, d = 600, 32
    H16, y, _, Z = _f16_memmap(tmp_path, n, d)
    losses = {}
    for name, H in (("f16", H16), ("f32", np.asarray(H16, dtype=np.float32))):
        torch.manual_seed(0)
        student = build_student(StudentSpec(kind="mlp", hidden=16), 2, in_dim=8)
        obj = objectives.make(objective, tau=2.0, seed=0)
        obj.setup(TeacherData(Z=Z, y=y, H=H))
        obj.attach(student)
        # CompRess's queue holds min(n, 128,000) pushed rows by design; it is no copy of H
        big = [k for k, t in obj.named_buffers() if t.numel() >= n * d and "queue" not in k]
        assert not big, f"{objective} holds an (n, d) tensor copy of H: {big}"
        idx = torch.arange(0, n, 5)[:64]
        torch.manual_seed(1)
        emb = torch.randn(len(idx), 16)
        out = torch.randn(len(idx), 2)
        batch = Batch(idx, torch.as_tensor(y)[idx], emb)
        losses[name] = obj.loss(out, batch).item()
        obj.after_step(out, batch)
    assert losses["f16"] == losses["f32"]


def test_agglomerative_casts_only_its_sample_and_matches_float32(tmp_path):
    """Ward sees at most ``max_samples`` rows per class: from a float16 memmap only those
    rows are read and cast, and the centroids and targets equal the float32 path's."""
    from lelp_studio.subclasses import ClusterSubclasses

    H16, y, _, Z = _f16_memmap(tmp_path, 2000, 12)
    H32 = np.asarray(H16, dtype=np.float32)
    a = ClusterSubclasses("agglomerative", 3, max_samples=150).fit(H16, y)
    b = ClusterSubclasses("agglomerative", 3, max_samples=150).fit(H32, y)
    for ca, cb in zip(a.centers_, b.centers_, strict=True):
        np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(a.targets(H16, Z), b.targets(H32, Z))
