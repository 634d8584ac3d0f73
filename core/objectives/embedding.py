"""FitNet and SEA: the student regresses a (mapped) teacher embedding, plus KD."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .. import losses
from ..config import ConfigError, FitNetSpec, SEASpec
from .base import (
    Batch,
    Objective,
    RunContext,
    TeacherData,
    TeacherRows,
    embedding_width,
    float32_blocks,
)


class _EmbeddingRegression(Objective):
    """``weight * MSE(map(h_s), target[idx]) + KD terms``; subclasses build the learned
    ``map`` and the ``target`` buffer in ``attach`` (both sized by the student's embedding)
    and read ``weight``, ``kd_weight`` (and FitNet's ``normalize``) from their section."""

    needs_embedding = True
    uses_transfer = True
    params: FitNetSpec | SEASpec
    map: nn.Linear
    target: Tensor

    def setup(self, teacher: TeacherData) -> _EmbeddingRegression:
        super().setup(teacher)
        self._require_class_signal(self.params.kd_weight)
        self._H = self._require_embeddings(teacher)
        return self

    def extra_modules(self) -> list[nn.Module]:
        return [self.map]

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        p = self.params
        normalize = bool(getattr(p, "normalize", False))
        assert batch.emb is not None  # needs_embedding: the loop passes it
        reg = losses.embedding_mse(self.map(batch.emb.float()), self._target(batch.idx), normalize)
        return p.weight * reg + self._kd_terms(out, batch, p.kd_weight)

    def _target(self, idx: Tensor) -> Tensor:
        return self.target[idx]


class FitNet(_EmbeddingRegression):
    """FitNet hints: a learned linear map A takes the student's penultimate embedding to the
    teacher's width and the student minimises MSE(A h_s, h_t) (optionally on L2-normalised
    vectors), added with a weight to the usual KD loss (set fitnet.kd_weight=0 and
    train.alpha>0 to use it with hard labels only). Romero, Ballas, Kahou, Chassang, Gatta &
    Bengio, 'FitNets: Hints for Thin Deep Nets', ICLR 2015.

    A is ``nn.Linear(emb_dim, d_t)`` trained with the student. ``normalize``: compare
    L2-normalised vectors (our option; METHODS.md "optionally on normalised vectors").
    """

    name = "fitnet"
    section = "fitnet"

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        # the target is H itself: its batch's rows are read and cast per step (TeacherRows)
        self.target_rows = TeacherRows(self._H)
        self.map = nn.Linear(embedding_width(student), int(self._H.shape[1]))

    def _target(self, idx: Tensor) -> Tensor:
        return self.target_rows[idx]


def sample_rows(H: np.ndarray, m: int, how: str, random_state: int = 0) -> np.ndarray:
    """Row indices of a sample of ``m`` rows of ``H`` (sorted).

    ``random``: uniform without replacement. ``diverse``: scikit-learn's ``kmeans_plusplus``
    seeding (each next row drawn with probability proportional to its squared distance to the
    rows already picked), our cheap, deterministic stand-in for SEA's k-DPP; it runs on a
    random pool of ``max(10 m, 5000)`` rows (all rows when fewer) to bound its
    O(pool * m * d) cost.
    """
    from sklearn.cluster import kmeans_plusplus

    n = H.shape[0]
    rng = np.random.default_rng(random_state)
    m = min(int(m), n)
    if how == "random":
        return np.sort(rng.choice(n, size=m, replace=False))
    if how != "diverse":
        raise ValueError(f"sampling={how!r}; valid: random, diverse")
    pool = np.sort(rng.choice(n, size=min(n, max(10 * m, 5000)), replace=False))
    _, picked = kmeans_plusplus(np.asarray(H[pool], dtype=np.float64), m, random_state=random_state)
    return np.sort(pool[picked])


class SEA(_EmbeddingRegression):
    """SEA: the teacher embedding is reduced to the student's width by PCA fitted on a sample
    of the training data (random, or diversity-aware by k-means++ seeding, our stand-in for
    the paper's k-DPP), and the student regresses it by MSE (through a learned square map,
    since our students' embeddings are post-ReLU), plus KD. Srivastava, Laine, Cicek, Ghosh &
    Heck, 'Specialized Embedding Approximation for Edge Intelligence: A Case Study in Urban
    Sound Classification', ICASSP 2021.

    Our choices: PCA (scikit-learn, whose SVD sign flip makes the directions reproducible)
    with ``emb_dim`` components, fitted on ``sample_size`` training rows (``sample_rows``);
    the targets are divided by their RMS so the MSE is O(1) whatever the teacher's scale.
    What distinguishes SEA from FitNet is the low-width, decorrelated target.
    """

    name = "sea"
    section = "sea"
    params: SEASpec

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        self.fit_target(embedding_width(student))

    def fit_target(self, emb_dim: int) -> SEA:
        """PCA of the teacher embedding to ``emb_dim`` dims, and the square map; returns self."""
        from sklearn.decomposition import PCA

        p, H = self.params, self._H
        rows = sample_rows(H, p.sample_size, p.sampling, self.seed)
        limit = min(len(rows), H.shape[1])
        if emb_dim > limit:
            raise ConfigError(
                f"sea: the student embedding has {emb_dim} dims but PCA on {len(rows)} rows of a "
                f"{H.shape[1]}-d teacher gives at most {limit}; lower student.hidden or raise "
                "train.sea.sample_size"
            )
        pca = PCA(n_components=emb_dim, random_state=self.seed)
        pca.fit(np.asarray(H[rows], dtype=np.float32))
        # (n, emb_dim) target from float32 blocks of H (H itself is never cast whole)
        target = np.concatenate([pca.transform(b) for b in float32_blocks(H)]).astype(np.float32)
        target /= max(float(np.sqrt(np.mean(target**2))), 1e-8)
        self.register_buffer("target", torch.as_tensor(target), persistent=False)
        self.map = nn.Linear(emb_dim, emb_dim)
        self.info_ = {
            "sea_explained_variance": float(pca.explained_variance_ratio_.sum()),
            "sea_sample_rows": int(len(rows)),
            "sea_sampling": p.sampling,
        }
        return self
