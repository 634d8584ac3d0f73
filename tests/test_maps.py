"""core/maps.py: projections land every set in the same coordinates; samples keep classes."""

from __future__ import annotations

import numpy as np
import pytest

from lelp_studio.maps import fit_projection, projection_key, stratified_sample


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    H = rng.normal(size=(300, 12)).astype(np.float32)
    H[:, 0] *= 5  # a dominant direction so PC1 is well defined
    y = (np.arange(300) % 3 == 0).astype(np.int64)
    return H, y


def test_pca_transform_reproduces_fit_coordinates(blobs):
    H, _ = blobs
    proj = fit_projection(H, "pca")
    assert proj.xy.shape == (300, 2)
    np.testing.assert_allclose(proj.transform(H), proj.xy, atol=1e-5)
    # PC1 follows the dominant (scaled) feature, and the sign convention makes it positive
    corr = np.corrcoef(proj.xy[:, 0], H[:, 0])[0, 1]
    assert corr > 0.95
    assert proj.axis_titles[0].startswith("PC1")


def test_pca_transform_places_new_points_linearly(blobs):
    H, _ = blobs
    proj = fit_projection(H, "pca")
    # PCA is affine: the image of the mean of two points is the mean of their images
    mid = (H[:1] + H[1:2]) / 2
    np.testing.assert_allclose(proj.transform(mid)[0], proj.xy[:2].mean(0), atol=1e-4)


def test_pca_is_deterministic(blobs):
    H, _ = blobs
    a = fit_projection(H, "pca", random_state=0).xy
    b = fit_projection(H.copy(), "pca", random_state=0).xy
    np.testing.assert_array_equal(a, b)


def test_pca_on_sample_covers_all_rows(blobs):
    H, y = blobs
    seen: list[tuple[int, int, str]] = []
    proj = fit_projection(H, "pca", sample=50, y=y, progress=lambda d, t, s: seen.append((d, t, s)))
    assert proj.n_fit == 50 and proj.xy.shape == (300, 2)
    assert seen and seen[-1][0] == seen[-1][1]


class _FakeLELP:
    """Minimal stand-in with the LELPSubclasses coordinates API: linear maps per class."""

    def __init__(self, d: int) -> None:
        rng = np.random.default_rng(1)
        self.V = [rng.normal(size=(d, 3)), rng.normal(size=(d, 1))]
        self.sizes_ = [3, 1]

    def coordinates(self, H: np.ndarray) -> list[np.ndarray]:
        return [H @ v for v in self.V]


@pytest.mark.parametrize("class_index", [0, 1])
def test_lelp_projection_uses_class_directions(blobs, class_index):
    H, _ = blobs
    model = _FakeLELP(H.shape[1])
    proj = fit_projection(H, "lelp", lelp_model=model, class_index=class_index)
    expected = model.coordinates(H)[class_index][:, :2]
    np.testing.assert_allclose(proj.xy[:, : expected.shape[1]], expected, rtol=1e-4, atol=1e-4)
    if expected.shape[1] == 1:  # a one-direction subspace gets a flat second axis
        assert np.all(proj.xy[:, 1] == 0)
    np.testing.assert_allclose(proj.transform(H), proj.xy, atol=1e-5)


def test_lelp_projection_errors_name_the_fix(blobs):
    H, _ = blobs
    with pytest.raises(ValueError, match="needs lelp_model"):
        fit_projection(H, "lelp")
    with pytest.raises(ValueError, match="class_index=5 is out of range"):
        fit_projection(H, "lelp", lelp_model=_FakeLELP(H.shape[1]), class_index=5)
    with pytest.raises(ValueError, match="unknown"):
        fit_projection(H, "tsne")


@pytest.mark.parametrize("n", [1, 7, 50, 299])
def test_stratified_sample_keeps_classes_and_size(n):
    y = np.array([0] * 270 + [1] * 25 + [2] * 5)
    idx = stratified_sample(y, n, seed=3)
    assert len(idx) == n and len(np.unique(idx)) == n
    assert np.all(np.diff(idx) > 0)
    if n >= 3:
        assert set(np.unique(y[idx])) == {0, 1, 2}
    np.testing.assert_array_equal(idx, stratified_sample(y, n, seed=3))


def test_stratified_sample_proportions():
    y = np.array([0] * 800 + [1] * 200)
    idx = stratified_sample(y, 100, seed=0)
    assert np.bincount(y[idx]).tolist() == [80, 20]
    assert len(stratified_sample(y, 5000, 0)) == 1000


def test_projection_key_depends_on_everything():
    k = projection_key("emb", "pca", {"sample": 10})
    assert k == projection_key("emb", "pca", {"sample": 10})
    assert k != projection_key("emb", "pca", {"sample": 11})
    assert k != projection_key("emb2", "pca", {"sample": 10})
    assert k != projection_key("emb", "umap", {"sample": 10})
    with pytest.raises(ValueError, match="unknown"):
        projection_key("emb", "tsne", {})


@pytest.mark.slow
def test_umap_fits_a_sample_and_places_the_rest(blobs):
    H, y = blobs
    proj = fit_projection(H, "umap", sample=120, y=y)
    assert proj.xy.shape == (300, 2) and np.isfinite(proj.xy).all()
    assert proj.n_fit == 120


class _Reads:
    """An H that records which rows were read."""

    def __init__(self, H: np.ndarray) -> None:
        self.H, self.asked = H, []

    def __len__(self) -> int:
        return len(self.H)

    def __getitem__(self, rows):  # type: ignore[no-untyped-def]
        self.asked.append(np.arange(len(self.H))[rows])
        return self.H[rows]


def test_projected_rows_are_computed_only_for_the_rows_a_map_draws():
    """A map of 1.6M rows draws 200,000: placing every row cast all of H for nothing."""
    from lelp_studio import plots

    rng = np.random.default_rng(0)
    H = rng.normal(size=(500, 8)).astype(np.float32)
    proj = fit_projection(H, "pca", sample=100)
    reads = _Reads(H)
    rows = proj.rows(reads)
    assert len(rows) == 500 and rows.shape == (500, 2) and reads.asked == []
    np.testing.assert_allclose(rows[np.array([3, 499])], proj.xy[[3, 499]], atol=1e-5)
    reads.asked.clear()
    y = np.repeat([0, 1], 250)
    fig = plots.embedding_map(rows, y.astype(str), y, max_points=60)
    assert sum(len(a) for a in reads.asked) == 60  # the sample's rows, nothing more
    drawn = np.concatenate([np.asarray(tr.customdata) for tr in fig.data])
    np.testing.assert_array_equal(np.sort(drawn), np.sort(np.concatenate(reads.asked)))
    first = fig.data[0]
    np.testing.assert_allclose([first.x[0], first.y[0]], proj.xy[first.customdata[0]], atol=1e-5)
    plots.embedding_map(rows, y.astype(str), y, max_points=60)  # a rerun: the same sample
    assert len(reads.asked) == 1  # remembered, not placed again
    np.testing.assert_allclose(rows[2:4], proj.xy[2:4], atol=1e-5)  # slices work too
