"""The seed papers' other distillation methods, as small objects the training loop drives.

Why objects and not only loss functions: these methods carry state beyond one batch (a learned
map, anchor queues, a knowledge base, a retrained teacher head, a gate with its own optimiser
and a dual variable). Each ``Method`` keeps that state so ``core/train.py`` stays one loop
with one hook per stage and no per-method branches:

- ``fit(teacher, emb_dim)`` once, before training, on the CACHED teacher arrays (PCA for SEA,
  the supervised-contrastive projection and knowledge base for ReAugKD, the subclass head for
  Subclass Distillation). A loss never runs the teacher (../shared/STYLE.md).
- ``n_out(C)``: the student's head width; ``init_student(student)`` (DWT's remapping).
- ``extra_modules()``: modules trained with the student by the main optimiser.
- ``loss(out, emb, idx, y, progress)``: ``out`` the student's logits (B, n_out), ``emb`` its
  penultimate embedding (B, h) when ``needs_embedding``, ``idx`` the batch's row numbers in
  the training split (to index precomputed teacher tensors), ``progress`` = step / total in
  [0, 1] (for schedules).
- ``after_step(out, emb, idx, y, progress)``: queue pushes, DiSK's gate and dual updates.
- ``class_log_probs(out)``: per-class log-probabilities for prediction;
  ``augment(log_probs, emb)``: ReAugKD's retrieval at inference (identity elsewhere).
- ``info()``: JSON-able facts for the run record (retrained teacher accuracy, retrieval time).

A ``Method`` is an ``nn.Module`` so ``method.to(device)`` moves its teacher tensors, queues
and maps with one call. Its parameters are NOT all trained by the main optimiser: only those
of ``extra_modules()`` are (DiSK's gate has its own optimiser, ReAugKD's projection is frozen
after ``fit``). Formulas and "our choice" points: ../shared/METHODS.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses
from .config import ConfigError, TrainSpec

METHOD_DOCS: dict[str, str] = {
    "fitnet": (
        "FitNet hints: a learned linear map A takes the student's penultimate embedding to the "
        "teacher's width and the student minimises MSE(A h_s, h_t) (optionally on L2-normalised "
        "vectors), added with a weight to the usual KD loss (set fitnet.kd_weight=0 and "
        "train.alpha>0 to use it with hard labels only). Romero, Ballas, Kahou, Chassang, "
        "Gatta & Bengio, 'FitNets: Hints for Thin Deep Nets', ICLR 2015."
    ),
    "sea": (
        "SEA: the teacher embedding is reduced to the student's width by PCA fitted on a sample "
        "of the training data (random, or diversity-aware by k-means++ seeding, our stand-in for "
        "the paper's k-DPP), and the student regresses it by MSE (through a learned square map, "
        "since our students' embeddings are post-ReLU), plus KD. Srivastava, Laine, Cicek, "
        "Ghosh & Heck, 'Specialized Embedding Approximation for Edge Intelligence: A Case Study "
        "in Urban Sound Classification', ICASSP 2021."
    ),
    "compress": (
        "CompRess: both networks keep FIFO queues of their own past L2-normalised embeddings; "
        "the student matches the teacher's distribution of similarities to these anchors, "
        "KL(softmax(Q_t h_t / T) || softmax(Q_s h_s / T)) with T = 0.04, plus KD for the head. "
        "The one-queue variant uses the teacher's queue for both, with the student embedding "
        "mapped to the teacher's width. Abbasi Koohpayegani, Tejankar & Pirsiavash, 'CompRess: "
        "Self-Supervised Learning by Compressing Representations', NeurIPS 2020."
    ),
    "reaugkd": (
        "ReAugKD: a linear projection of the teacher embedding to the student's width is "
        "trained with a supervised contrastive loss; the projected training embeddings and the "
        "teacher's soft labels form a knowledge base. The student learns a relational loss "
        "(its similarities to teacher keys match the teacher's own) plus KD, and at inference "
        "mixes its prediction with the soft labels of its k nearest knowledge-base entries "
        "(weight lambda). Zhang, Lou, Tang, Schuurmans & Le, 'ReAugKD: Retrieval-Augmented "
        "Knowledge Distillation For Pre-trained Language Models', ACL 2023."
    ),
    "subclass-distill": (
        "Subclass Distillation: the teacher's head is retrained with S outputs per class (class "
        "logit = logsumexp of its subclass logits) and an auxiliary loss that spreads examples "
        "over subclasses; the student then learns the teacher's subclass distribution, "
        "alpha * T^2 * CE(soft) + (1 - alpha) * CE(y), alpha = 0.5, T = 4. Here the head is "
        "retrained on the cached frozen embeddings (retraining the encoder needs a GPU). "
        "Müller, Kornblith & Hinton, 'Subclass Distillation', arXiv 2002.03936, 2020."
    ),
    "dwt": (
        "Distillation from a weaker teacher: the student is larger than its teacher and learns "
        "a_h * CE(y) + a_s * KD, with a_s constant or decaying linearly from 4 to 1 (a large "
        "soft weight speeds early training, a normal one ends higher); optionally the student "
        "starts from the teacher's parameters (remapping), which the paper found to hurt. Lee, "
        "Park, Kim & Ko, 'A Study on Knowledge Distillation from Weak Teacher for Scaling Up "
        "Pre-trained Language Models', Findings of ACL 2023."
    ),
    "disk": (
        "Scaffolding (DiSK): during training a small gating network g(x) in [0, 1], reading the "
        "teacher's and student's logits, boosts the student's logits on the teacher's top-K "
        "classes and the true class, so the student is not forced to fit examples beyond its "
        "capacity; a dual variable keeps the mean boost within a budget that decays (cosine) "
        "to zero, and gate and student are updated alternately. At test time the student runs "
        "alone. Kag, Fedorov, Gangrade, Whatmough & Saligrama, 'Scaffolding a Student to "
        "Instill Knowledge', ICLR 2023."
    ),
    "amad": (
        "Attention map alignment (AMAD), for a transformer student with fewer attention heads "
        "than its teacher: each teacher head's attention map of one layer is matched by a mix "
        "of the student's heads, weighted by a softmax over their cosine similarities, "
        "a_ij = softmax_j(cos(t_i, s_j)); the loss compares t_i with sum_j a_ij s_j (KL between "
        "attention rows, the paper's best, or the L2 distance of normalised maps), plus KD for "
        "the head. Needs student kind 'transformer' and a MiniLM or local checkpoint "
        "teacher; the teacher's maps of the training set are computed once. Zhao et al., "
        "'Attention Map Alignment Distillation' (AMAD), AAAI 2024."
    ),
}


@dataclass
class TeacherData:
    """Cached teacher arrays a method fits on: ``H`` (n, d) embeddings and ``Z`` (n, C) logits
    of the TRAINING split, ``y`` (n,) labels; optionally the eval split's (to report the
    accuracy of a retrained teacher)."""

    H: np.ndarray
    Z: np.ndarray
    y: np.ndarray
    H_eval: np.ndarray | None = None
    Z_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return int(self.Z.shape[1])


class EmbeddingQueue(nn.Module):
    """A FIFO of the last ``size`` embedding rows (CompRess's anchor memory).

    ``push(x)`` appends rows, overwriting the oldest once full (a batch larger than the queue
    keeps its last ``size`` rows); ``items()`` returns the stored rows oldest first. A buffer,
    so ``.to(device)`` moves it; pushes never build autograd graphs (rows are detached).

    >>> q = EmbeddingQueue(2, 1); q.push(torch.tensor([[1.0], [2.0], [3.0]])); q.items().ravel()
    tensor([2., 3.])
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"EmbeddingQueue: size must be >= 1, got {size}")
        self.size = int(size)
        self.register_buffer("buf", torch.zeros(self.size, dim), persistent=False)
        self.ptr = 0  # next row to write
        self.count = 0  # rows filled so far (<= size)

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def push(self, x: Tensor) -> None:
        x = x.detach().to(self.buf.dtype)[-self.size :]
        b = x.shape[0]
        end = self.ptr + b
        if end <= self.size:
            self.buf[self.ptr : end] = x
        else:  # wrap around
            first = self.size - self.ptr
            self.buf[self.ptr :] = x[:first]
            self.buf[: b - first] = x[first:]
        self.ptr = end % self.size
        self.count = min(self.size, self.count + b)

    def checkpoint_state(self) -> dict[str, Tensor]:
        """The rows and the write position, for a resumed run to continue the same queue."""
        return {"buf": self.buf, "pos": torch.tensor([self.ptr, self.count])}

    def load_checkpoint_state(self, state: Mapping[str, Tensor]) -> None:
        self.buf.copy_(state["buf"])
        self.ptr, self.count = (int(v) for v in state["pos"])

    def items(self) -> Tensor:
        if self.count < self.size:
            return self.buf[: self.count]
        return torch.cat([self.buf[self.ptr :], self.buf[: self.ptr]])


class Method(nn.Module):
    """Base class: the hooks ``core/train.py`` calls (see the module docstring).

    Subclasses set ``name`` and override what they need. The shared KD part, used by the
    methods that add a term to KD: ``kd_weight * kd(out, t, train.tau) + train.alpha *
    CE(y, out)``.
    """

    name = "base"
    needs_embedding = False

    def __init__(self, spec: TrainSpec) -> None:
        super().__init__()
        self.spec = spec
        self.info_: dict[str, Any] = {}
        self.register_buffer("t_logits", torch.zeros(0), persistent=False)

    # ---- set-up ----
    def fit(self, teacher: TeacherData, emb_dim: int) -> Method:
        """Pre-training work on the cached teacher arrays; returns self."""
        self._check_teacher(teacher)
        self.t_logits = torch.as_tensor(np.asarray(teacher.Z), dtype=torch.float32)
        return self

    def n_out(self, n_classes: int) -> int:
        return int(n_classes)

    def init_student(self, student: nn.Module) -> None:
        """Change the freshly built student before training (DWT's remapping); default none."""

    def extra_modules(self) -> list[nn.Module]:
        return []

    # ---- per step ----
    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        raise NotImplementedError

    def after_step(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> None:
        """State updates after the optimiser step (``out``/``emb`` detached); default none."""

    # ---- prediction ----
    def class_log_probs(self, out: Tensor) -> Tensor:
        return F.log_softmax(out.float(), dim=-1)

    def augment(self, log_probs: Tensor, emb: Tensor | None) -> Tensor:
        """Inference-time change of the prediction (ReAugKD retrieval); default identity."""
        return log_probs

    def info(self) -> dict[str, Any]:
        return dict(self.info_)

    # ---- persistence ----
    def checkpoint_state(self) -> dict[str, Tensor]:
        """What training changes in the method (learned maps; queues, DiSK's gate, its
        optimiser and dual variable in the subclasses), saved in the student's checkpoint so a
        resumed run continues the method instead of restarting it. Default: the module's
        persistent tensors, i.e. its trained submodules; teacher arrays are rebuilt by ``fit``."""
        return dict(self.state_dict())

    def load_checkpoint_state(self, state: Mapping[str, Tensor]) -> None:
        """Restore ``checkpoint_state``'s output (after ``fit`` and ``.to(device)``)."""
        self.load_state_dict(dict(state), strict=True)

    def state_tensors(self) -> dict[str, Tensor]:
        """Learned state needed to replay the method after training (ReAugKD's maps), saved by
        core/pipeline.py as ``method.safetensors`` next to the student; default none.
        State rebuilt from the cached teacher arrays (knowledge bases) is NOT included."""
        return {}

    def load_state_tensors(self, state: Mapping[str, Tensor]) -> Method:
        """Restore what ``state_tensors`` returned; returns self. The default accepts only an
        empty state, so a file meant for another method fails loudly."""
        if state:
            raise ValueError(
                f"{self.name}: keeps no saved state but got keys {sorted(state)}; the file "
                "belongs to another method (check the run's train.objective)"
            )
        return self

    # ---- helpers ----
    def _check_teacher(self, teacher: TeacherData) -> None:
        n = len(teacher.y)
        if teacher.H.shape[0] != n or teacher.Z.shape[0] != n:
            raise ValueError(
                f"{self.name}: teacher H {teacher.H.shape} and Z {teacher.Z.shape} must have one "
                f"row per training example ({n})"
            )

    def _kd_terms(self, out: Tensor, idx: Tensor, y: Tensor, kd_weight: float) -> Tensor:
        total = out.sum() * 0.0
        if kd_weight > 0:
            total = total + kd_weight * losses.kd(out, self.t_logits[idx], self.spec.tau)
        return losses.with_hard(total, out, y, self.spec.alpha)

    def _require_class_signal(self, kd_weight: float, section: str) -> None:
        if kd_weight == 0 and self.spec.alpha == 0:
            raise ConfigError(
                f"{self.name}: with train.{section}.kd_weight=0 and train.alpha=0 nothing trains "
                f"the student's head; set train.alpha > 0 (hard labels) or "
                f"train.{section}.kd_weight > 0"
            )


class _EmbeddingRegression(Method):
    """FitNet and SEA: ``weight * MSE(map(h_s), target[idx]) + KD terms``; subclasses set the
    learned ``map`` and the ``target`` buffer in ``fit``, and read ``weight``, ``kd_weight``
    (and FitNet's ``normalize``) from their own ``train.<name>`` section."""

    needs_embedding = True
    map: nn.Linear
    target: Tensor

    def extra_modules(self) -> list[nn.Module]:
        return [self.map]

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = getattr(self.spec, self.name)
        normalize = bool(getattr(p, "normalize", False))
        reg = losses.embedding_mse(self.map(emb.float()), self.target[idx], normalize)
        return p.weight * reg + self._kd_terms(out, idx, y, p.kd_weight)


class FitNet(_EmbeddingRegression):
    """FitNet hints (Romero et al. 2015): ``weight * MSE(A h_s, h_t) + KD terms``.

    A is a learned ``nn.Linear(emb_dim, d_t)`` trained with the student. ``normalize``:
    compare L2-normalised vectors (our option; METHODS.md "optionally on normalised vectors").
    """

    name = "fitnet"

    def fit(self, teacher: TeacherData, emb_dim: int) -> FitNet:
        super().fit(teacher, emb_dim)
        p = self.spec.fitnet
        self._require_class_signal(p.kd_weight, "fitnet")
        self.register_buffer(
            "target", torch.as_tensor(np.asarray(teacher.H), dtype=torch.float32), persistent=False
        )
        self.map = nn.Linear(emb_dim, int(teacher.H.shape[1]))
        return self


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
    """SEA (Srivastava et al. 2021): regress the PCA-reduced teacher embedding.

    Our choices: PCA (scikit-learn, whose SVD sign flip makes the directions reproducible) with
    ``emb_dim`` components, fitted on ``sample_size`` training rows (``sample_rows``); the
    targets are divided by their RMS so the MSE is O(1) whatever the teacher's scale (the
    components keep their relative variances). Our students' embeddings are post-ReLU (non
    negative) while PCA coordinates are signed, so a learned square affine map sits between
    them; what distinguishes SEA from FitNet is the low-width, decorrelated target.
    """

    name = "sea"

    def fit(self, teacher: TeacherData, emb_dim: int) -> SEA:
        from sklearn.decomposition import PCA

        super().fit(teacher, emb_dim)
        p = self.spec.sea
        self._require_class_signal(p.kd_weight, "sea")
        H = np.asarray(teacher.H, dtype=np.float32)
        rows = sample_rows(H, p.sample_size, p.sampling, self.spec.seed)
        limit = min(len(rows), H.shape[1])
        if emb_dim > limit:
            raise ConfigError(
                f"sea: the student embedding has {emb_dim} dims but PCA on {len(rows)} rows of a "
                f"{H.shape[1]}-d teacher gives at most {limit}; lower student.hidden or raise "
                "train.sea.sample_size"
            )
        pca = PCA(n_components=emb_dim, random_state=self.spec.seed).fit(H[rows])
        target = pca.transform(H).astype(np.float32)
        target /= max(float(np.sqrt(np.mean(target**2))), 1e-8)
        self.register_buffer("target", torch.as_tensor(target), persistent=False)
        self.map = nn.Linear(emb_dim, emb_dim)
        self.info_ = {
            "sea_explained_variance": float(pca.explained_variance_ratio_.sum()),
            "sea_sample_rows": int(len(rows)),
            "sea_sampling": p.sampling,
        }
        return self


class CompRess(Method):
    """CompRess (Abbasi Koohpayegani et al. 2020) similarity matching with anchor queues.

    Our choices: queue size ``min(128000, n_train)`` unless set; the queues start empty and,
    while they are, a batch serves as its own anchors with each query's own row masked out
    (so the first step already has a signal); the teacher queue holds teacher embeddings of
    the same rows as the student queue (pushed together after each step, ``after_step``);
    one-queue maps the student embedding to the teacher's width with a learned linear map.
    The head is trained by the KD terms (the paper evaluates with a linear probe instead).
    """

    name = "compress"
    needs_embedding = True

    def fit(self, teacher: TeacherData, emb_dim: int) -> CompRess:
        super().fit(teacher, emb_dim)
        p = self.spec.compress
        self._require_class_signal(p.kd_weight, "compress")
        H = torch.as_tensor(np.asarray(teacher.H), dtype=torch.float32)
        self.register_buffer("t_emb", F.normalize(H, dim=-1), persistent=False)
        size = p.queue_size or min(128_000, H.shape[0])
        self.queue_t = EmbeddingQueue(size, H.shape[1])
        if p.queues == "one":
            self.map = nn.Linear(emb_dim, H.shape[1])
        else:
            self.queue_s = EmbeddingQueue(size, emb_dim)
        self.info_ = {"compress_queue_size": int(size), "compress_queues": p.queues}
        return self

    def extra_modules(self) -> list[nn.Module]:
        return [self.map] if self.spec.compress.queues == "one" else []

    def _query_s(self, emb: Tensor) -> Tensor:
        q = self.map(emb.float()) if self.spec.compress.queues == "one" else emb.float()
        return F.normalize(q, dim=-1)

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = self.spec.compress
        q_s, q_t = self._query_s(emb), self.t_emb[idx]
        mask = None
        if len(self.queue_t) == 0:
            a_t, a_s = q_t, q_s.detach()
            mask = torch.eye(q_t.shape[0], dtype=torch.bool, device=q_t.device)
        else:
            a_t = self.queue_t.items()
            a_s = a_t if p.queues == "one" else self.queue_s.items()
        if p.queues == "one":
            a_s = a_t
        sim = losses.similarity_kl(q_s, q_t, a_s, a_t, p.temperature, mask)
        return p.weight * sim + self._kd_terms(out, idx, y, p.kd_weight)

    def _queues(self) -> dict[str, EmbeddingQueue]:
        names = ("queue_t", "queue_s") if self.spec.compress.queues == "two" else ("queue_t",)
        return {n: getattr(self, n) for n in names}

    def checkpoint_state(self) -> dict[str, Tensor]:
        state = super().checkpoint_state()
        for name, q in self._queues().items():
            state |= {f"{name}.{k}": v for k, v in q.checkpoint_state().items()}
        return state

    def load_checkpoint_state(self, state: Mapping[str, Tensor]) -> None:
        queues = self._queues()
        own = {k: v for k, v in state.items() if k.split(".", 1)[0] not in queues}
        super().load_checkpoint_state(own)
        for name, q in queues.items():
            prefix = f"{name}."
            q.load_checkpoint_state(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    @torch.no_grad()
    def after_step(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> None:
        self.queue_t.push(self.t_emb[idx])
        if self.spec.compress.queues == "two":
            self.queue_s.push(self._query_s(emb))


class ReAugKD(Method):
    """ReAugKD (Zhang et al. 2023): relational loss + KD, retrieval-augmented inference.

    ``fit`` trains the teacher-side projection P (``nn.Linear(d_t, emb_dim)``, no bias) with
    the supervised contrastive loss on the cached embeddings (Adam, ``proj_epochs`` epochs of
    batches of 512, seeded), then builds the knowledge base: keys ``normalize(P h_t)`` and the
    teacher's soft labels ``softmax(z_t)`` (T = 1) of every training row, indexed by
    scikit-learn's ``NearestNeighbors`` (euclidean on unit vectors = cosine ranking; FAISS is
    not a dependency). Our choice: a learned square map B turns the (post-ReLU) student
    embedding into the query ``normalize(B h_s)``. At inference ``augment`` retrieves the
    ``k`` nearest keys and mixes (``losses.retrieval_mix``); its wall time is in ``info``.
    On training rows an example retrieves itself, so train-split fidelity with retrieval is
    optimistic by design.
    """

    name = "reaugkd"
    needs_embedding = True

    def fit(self, teacher: TeacherData, emb_dim: int) -> ReAugKD:
        super().fit(teacher, emb_dim)
        p = self.spec.reaugkd
        self._require_class_signal(p.kd_weight, "reaugkd")
        H = torch.as_tensor(np.asarray(teacher.H), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(teacher.y), dtype=torch.long)
        t0 = time.perf_counter()
        self.proj = nn.Linear(H.shape[1], emb_dim, bias=False)
        self.proj_loss_ = self._train_projection(H, y)
        self.proj.requires_grad_(False)
        self.build_knowledge_base(teacher.H, teacher.Z)
        self.query = nn.Linear(emb_dim, emb_dim)
        self.info_ = {
            "reaugkd_kb_size": int(H.shape[0]),
            "reaugkd_fit_s": time.perf_counter() - t0,
            "reaugkd_supcon_loss": self.proj_loss_,
            "reaugkd_retrieval_s": 0.0,
        }
        return self

    def build_knowledge_base(self, H: np.ndarray, Z: np.ndarray) -> ReAugKD:
        """Keys ``normalize(P h_t)``, soft labels ``softmax(z_t)`` and their k-NN index, from
        the training split's teacher arrays. Why separate from ``fit``: a saved run keeps only
        P and B (``state_tensors``), and the knowledge base is rebuilt from the cached teacher
        outputs when the run is replayed (``core.pipeline.load_reaugkd``)."""
        from sklearn.neighbors import NearestNeighbors

        # np.array copies: cached teacher arrays are read-only memory maps
        Ht = torch.from_numpy(np.array(H, dtype=np.float32))
        Zt = torch.from_numpy(np.array(Z, dtype=np.float32))
        if Ht.ndim != 2 or Ht.shape[1] != self.proj.in_features or Zt.shape[0] != Ht.shape[0]:
            raise ValueError(
                f"reaugkd: teacher H {tuple(Ht.shape)} / Z {tuple(Zt.shape)} do not fit the "
                f"projection ({self.proj.in_features}-d input, one Z row per H row); use the "
                "teacher outputs the run was trained on (its artifacts' teacher_key)"
            )
        with torch.no_grad():
            keys = F.normalize(self.proj(Ht.to(self.proj.weight.device)), dim=-1)
        self.register_buffer("keys", keys, persistent=False)
        self.kb_probs = F.softmax(Zt, -1)
        k = min(self.spec.reaugkd.k, Ht.shape[0])
        self.index_ = NearestNeighbors(n_neighbors=k).fit(keys.cpu().numpy())
        self.info_.setdefault("reaugkd_retrieval_s", 0.0)
        return self

    def _train_projection(self, H: Tensor, y: Tensor) -> float:
        p = self.spec.reaugkd
        gen = torch.Generator().manual_seed(self.spec.seed)
        with torch.random.fork_rng():
            torch.manual_seed(self.spec.seed)
            self.proj.reset_parameters()
        opt = torch.optim.Adam(self.proj.parameters(), lr=p.proj_lr)
        n, bs, last = H.shape[0], 512, float("nan")
        for _ in range(p.proj_epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i : i + bs]
                loss = losses.supcon(self.proj(H[b]), y[b], p.supcon_temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last = float(loss.detach())
        return last

    def extra_modules(self) -> list[nn.Module]:
        return [self.query]

    STATE_KEYS = ("proj.weight", "query.weight", "query.bias")

    def state_tensors(self) -> dict[str, Tensor]:
        """P (``proj.weight`` (h, d_t)) and B (``query.weight`` (h, h), ``query.bias`` (h,)),
        CPU copies: with the cached teacher outputs they rebuild the exact retrieval."""
        if not hasattr(self, "proj") or not hasattr(self, "query"):
            raise ValueError("reaugkd: nothing to save before fit(); fit the method first")
        named = {
            "proj.weight": self.proj.weight,
            "query.weight": self.query.weight,
            "query.bias": self.query.bias,
        }
        return {k: v.detach().float().cpu().contiguous().clone() for k, v in named.items()}

    def load_state_tensors(self, state: Mapping[str, Tensor]) -> ReAugKD:
        """Rebuild P and B from ``state_tensors``' output (then call
        ``build_knowledge_base``); shapes are checked so a mismatched file fails here."""
        missing = [k for k in self.STATE_KEYS if k not in state]
        extra = sorted(set(state) - set(self.STATE_KEYS))
        if missing or extra:
            raise ValueError(
                f"reaugkd: saved state must hold exactly {list(self.STATE_KEYS)}; missing "
                f"{missing}, unexpected {extra} (was it saved by another method?)"
            )
        pw, qw, qb = (torch.as_tensor(state[k]).float() for k in self.STATE_KEYS)
        h = pw.shape[0]
        if pw.ndim != 2 or tuple(qw.shape) != (h, h) or tuple(qb.shape) != (h,):
            raise ValueError(
                f"reaugkd: inconsistent saved shapes proj.weight {tuple(pw.shape)}, query.weight "
                f"{tuple(qw.shape)}, query.bias {tuple(qb.shape)}; expected (h, d), (h, h), (h,)"
            )
        with torch.random.fork_rng():  # the throw-away init must not move the global RNG
            self.proj = nn.Linear(pw.shape[1], h, bias=False)
            self.query = nn.Linear(h, h)
        with torch.no_grad():
            self.proj.weight.copy_(pw)
            self.query.weight.copy_(qw)
            self.query.bias.copy_(qb)
        self.proj.requires_grad_(False)
        return self

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = self.spec.reaugkd
        rel = losses.relational_kl(self.query(emb.float()), self.keys[idx], p.temperature)
        return p.weight * rel + self._kd_terms(out, idx, y, p.kd_weight)

    @torch.no_grad()
    def neighbours(self, emb: Tensor, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest knowledge-base rows to each student embedding: ``(indices (B, k)
        into the training split, cosine similarities (B, k))``, nearest first."""
        q = F.normalize(self.query(emb.float().to(self.keys.device)), dim=-1).cpu().numpy()
        dist, ind = self.index_.kneighbors(q, n_neighbors=k or self.index_.n_neighbors)
        return ind, 1.0 - dist**2 / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors

    def augment(self, log_probs: Tensor, emb: Tensor | None) -> Tensor:
        p = self.spec.reaugkd
        t0 = time.perf_counter()
        ind, sims = self.neighbours(emb)
        mixed = losses.retrieval_mix(
            log_probs.cpu(),
            self.kb_probs[torch.as_tensor(ind)],
            torch.as_tensor(sims, dtype=torch.float32),
            p.lam,
            p.retrieval_temperature,
        )
        self.info_["reaugkd_retrieval_s"] += time.perf_counter() - t0
        return mixed.to(log_probs.device)


class SubclassDistill(Method):
    """Subclass Distillation (Müller, Kornblith & Hinton 2020).

    ``fit`` retrains the teacher's HEAD on the cached frozen embeddings: a fresh
    ``nn.Linear(d, C*S)`` (seeded), Adam at ``head_lr`` for ``head_epochs`` epochs of batches
    of 256, loss ``CE(y, logsumexp-class logits) + aux_weight * subclass_aux(u, aux_T)``. Our
    choice: the encoder stays frozen (retraining it needs a GPU and the teacher's weights).
    The retrained teacher's accuracy (train and eval split) is in ``info``. The student has
    C*S outputs; its class prediction is the logsumexp over each class's block.
    """

    name = "subclass-distill"

    def fit(self, teacher: TeacherData, emb_dim: int) -> SubclassDistill:
        super().fit(teacher, emb_dim)
        p = self.spec.subclass_distill
        C, S = teacher.n_classes, p.n_subclasses
        H = torch.as_tensor(np.asarray(teacher.H), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(teacher.y), dtype=torch.long)
        with torch.random.fork_rng():
            torch.manual_seed(self.spec.seed)
            head = nn.Linear(H.shape[1], C * S)
        # Standardising H keeps one learning rate good for teachers of any embedding scale.
        mean, std = H.mean(0), H.std(0).clamp_min(1e-6)
        opt = torch.optim.Adam(head.parameters(), lr=p.head_lr)
        gen = torch.Generator().manual_seed(self.spec.seed)
        n, bs = H.shape[0], 256
        Hs = (H - mean) / std
        for _ in range(p.head_epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i : i + bs]
                u = head(Hs[b])
                loss = F.nll_loss(losses.subclass_log_probs(u, S), y[b])
                if p.aux_weight > 0 and len(b) > 1:
                    loss = loss + p.aux_weight * losses.subclass_aux(u, p.aux_temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            t_sub = head(Hs)
            self.info_ = {
                "subclass_teacher_train_accuracy": _acc(t_sub, y, S),
                "subclass_teacher_assignment_entropy": _assignment_entropy(t_sub, C, S),
            }
            if teacher.H_eval is not None and teacher.y_eval is not None:
                He = torch.as_tensor(np.asarray(teacher.H_eval), dtype=torch.float32)
                ye = torch.as_tensor(np.asarray(teacher.y_eval), dtype=torch.long)
                self.info_["subclass_teacher_accuracy"] = _acc(head((He - mean) / std), ye, S)
        self.register_buffer("t_sub", t_sub, persistent=False)
        return self

    def n_out(self, n_classes: int) -> int:
        return int(n_classes * self.spec.subclass_distill.n_subclasses)

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = self.spec.subclass_distill
        return losses.subclass_distill(out, self.t_sub[idx], y, p.n_subclasses, p.tau, p.alpha)

    def class_log_probs(self, out: Tensor) -> Tensor:
        return losses.subclass_log_probs(out, self.spec.subclass_distill.n_subclasses)


def _acc(u: Tensor, y: Tensor, S: int) -> float:
    return float(100.0 * (losses.subclass_log_probs(u, S).argmax(-1) == y).float().mean())


def _assignment_entropy(u: Tensor, C: int, S: int) -> float:
    """Mean over classes of the entropy (nats) of how examples spread over that class's S
    subclasses (argmax); log S when spread evenly, 0 when all share one subclass."""
    a = u.view(-1, C, S).argmax(-1)  # (n, C) subclass argmax within each class block
    hs = []
    for c in range(C):
        freq = torch.bincount(a[:, c], minlength=S).float()
        q = freq / freq.sum()
        hs.append(float(-(q[q > 0] * q[q > 0].log()).sum()))
    return float(np.mean(hs))


class DWT(Method):
    """Distillation from a weaker teacher (Lee et al. 2023):
    ``hard_weight * CE(y) + a_s(progress) * kd(out, t, train.tau)``.

    ``a_s`` is ``soft_start`` (schedule constant) or ``losses.linear_schedule`` from
    ``soft_start`` to ``soft_end``. Our ``kd`` includes the usual ``tau^2`` factor (equal to
    the paper's plain KL at tau = 1). ``remap``: ``init_student`` copies the teacher's layers
    (``set_teacher_layers``) into the student (``remap_mlp``).
    """

    name = "dwt"

    def fit(self, teacher: TeacherData, emb_dim: int) -> DWT:
        super().fit(teacher, emb_dim)
        p = self.spec.dwt
        self.info_ = {
            "dwt_soft_start": p.soft_start,
            "dwt_soft_end": p.soft_end if p.schedule == "linear" else p.soft_start,
            "dwt_remap": p.remap,
        }
        return self

    def soft_weight(self, progress: float) -> float:
        p = self.spec.dwt
        if p.schedule == "constant":
            return p.soft_start
        return losses.linear_schedule(progress, p.soft_start, p.soft_end)

    def set_teacher_layers(self, layers: list[tuple[Tensor, Tensor]]) -> None:
        """The teacher's linear layers ``(weight (out, in), bias (out,))`` in order, the last
        being its head, with input standardisation already folded in (``remap`` needs them)."""
        self.teacher_layers_ = layers

    def init_student(self, student: nn.Module) -> None:
        if not self.spec.dwt.remap:
            return
        layers = getattr(self, "teacher_layers_", None)
        if layers is None:
            raise ConfigError(
                "dwt: train.dwt.remap=true needs the teacher's layers (set_teacher_layers); "
                "only teacher.kind=digits-mlp with student.kind=mlp supports remapping"
            )
        remap_mlp(student, layers)

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = self.spec.dwt
        soft = losses.kd(out, self.t_logits[idx], self.spec.tau)
        return p.hard_weight * losses.hard(out, y) + self.soft_weight(progress) * soft


@torch.no_grad()
def remap_mlp(student: nn.Module, layers: list[tuple[Tensor, Tensor]]) -> None:
    """DWT's parameter remapping for MLP students (``MLPStudent``: ``trunk`` of Linear+ReLU,
    then ``head``).

    Teacher hidden layer i is copied into student trunk layer i; when the student is deeper,
    the teacher's LAST hidden layer is reused for every extra layer (Lee et al. 2023); the
    teacher head goes into the student head. Our choice for a wider student: the teacher's
    weights fill the top-left block of each student matrix and the rest keeps its random
    initialisation (bert2BERT-style function preservation would need more than DWT asks).
    """
    trunk = [m for m in student.trunk if isinstance(m, nn.Linear)]
    hidden, head = layers[:-1], layers[-1]
    if not hidden:
        raise ValueError("remap_mlp: the teacher needs at least one hidden layer")
    if len(hidden) > 1 and hidden[-1][0].shape[0] != hidden[-1][0].shape[1]:
        raise ValueError("remap_mlp: the teacher's last hidden layer must be square to reuse it")
    for i, lin in enumerate(trunk):
        w, b = hidden[min(i, len(hidden) - 1)]
        if i >= len(hidden) and w.shape[0] != w.shape[1]:
            raise ValueError("remap_mlp: cannot reuse a non-square teacher layer")
        _copy_block(lin, w, b)
    _copy_block(student.head, *head)


def digits_teacher_layers(
    features: np.ndarray, y: np.ndarray, n_classes: int, hidden: int, seed: int, H_check: np.ndarray
) -> list[tuple[Tensor, Tensor]]:
    """The ``digits-mlp`` teacher's linear layers, for DWT's remapping (``remap_mlp``).

    Why a replay: core/teachers.py keeps only the teacher's outputs (H, Z, W, b), not its body.
    This repeats its documented recipe (seeded init, standardised pixels, Adam 1e-3 with weight
    decay 1e-4, 400 steps of 128 seeded draws) and CHECKS that the rebuilt body reproduces the
    cached training embeddings ``H_check``; if the recipe ever changes the check fails loudly
    rather than remapping a different network. The standardisation is folded into the first
    layer (``W / std``, ``b - W (mean / std)``) since the student reads raw features.
    """
    X = np.asarray(features, dtype=np.float32)
    mean, std = X.mean(0), X.std(0)
    std[std < 1e-6] = 1.0
    xt = torch.as_tensor((X - mean) / std)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        d_in, k = X.shape[1], hidden
        body = nn.Sequential(nn.Linear(d_in, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU())
        head = nn.Linear(k, n_classes)
        model = nn.Sequential(body, head)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(seed)
        n = len(yt)
        model.train()
        for _ in range(400):
            idx = torch.randint(0, n, (min(128, n),), generator=gen)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        H = body(xt).numpy()
        if H.shape != H_check.shape or not np.allclose(H, H_check, atol=1e-3, rtol=1e-3):
            raise ValueError(
                "dwt remap: rebuilding the digits-mlp teacher did not reproduce its cached "
                "embeddings (core/teachers.py's recipe changed?); set train.dwt.remap=false"
            )
        m, s = torch.as_tensor(mean), torch.as_tensor(std)
        w1, b1 = body[0].weight / s, body[0].bias - (body[0].weight * (m / s)).sum(1)
        return [
            (w1.clone(), b1.clone()),
            (body[2].weight.clone(), body[2].bias.clone()),
            (head.weight.clone(), head.bias.clone()),
        ]


def _copy_block(lin: nn.Linear, w: Tensor, b: Tensor) -> None:
    o, i = w.shape
    if o > lin.out_features or i > lin.in_features:
        raise ConfigError(
            f"remap_mlp: teacher layer {tuple(w.shape)} does not fit student layer "
            f"{(lin.out_features, lin.in_features)}; the student must be at least as wide"
        )
    lin.weight[:o, :i] = w.to(lin.weight)
    lin.bias[:o] = b.to(lin.bias)


class DiSK(Method):
    """Scaffolding / DiSK (Kag et al. 2023).

    Student step (``loss``, gate frozen): ``kd(s~, t, tau) + alpha * CE(y, s~)`` with
    ``s~ = scaffold_logits(s, g(x), top_k_mask(t, y, K), boost)``. Gate step (``after_step``,
    student frozen): the same loss on ``s~`` plus ``lambda * (mean g - b(progress))`` with
    the cosine budget ``b``; then dual ascent ``lambda <- max(0, lambda + dual_lr * (mean g -
    b))``. The gate ``sigmoid(MLP([t, s]))`` has its own Adam optimiser, so it is not in
    ``extra_modules``. Our choices: K = 1 for two classes and 2 otherwise (``top_k``
    overrides); boost additive in logit space; alternation every step. The student is
    evaluated alone.
    """

    name = "disk"

    def fit(self, teacher: TeacherData, emb_dim: int) -> DiSK:
        super().fit(teacher, emb_dim)
        p = self.spec.disk
        C = teacher.n_classes
        self.k_ = p.top_k or (1 if C == 2 else 2)
        with torch.random.fork_rng():
            torch.manual_seed(self.spec.seed)
            self.gate = nn.Sequential(
                nn.Linear(2 * C, p.gate_hidden), nn.ReLU(), nn.Linear(p.gate_hidden, 1)
            )
        self.register_buffer("dual", torch.zeros(()), persistent=False)
        self._gate_opt: torch.optim.Optimizer | None = None
        self._last_gate = torch.zeros(())
        return self

    def _g(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.sigmoid(self.gate(torch.cat([t, s.float()], dim=-1))).squeeze(-1)

    def _scaffolded_loss(self, out: Tensor, t: Tensor, y: Tensor, g: Tensor) -> Tensor:
        s_tilde = losses.scaffold_logits(
            out, g, losses.top_k_mask(t, y, self.k_), self.spec.disk.boost
        )
        return losses.with_hard(losses.kd(s_tilde, t, self.spec.tau), s_tilde, y, self.spec.alpha)

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        t = self.t_logits[idx]
        with torch.no_grad():
            g = self._g(t, out.detach())
        return self._scaffolded_loss(out, t, y, g)

    def after_step(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> None:
        p = self.spec.disk
        gate_opt = self._gate_optimizer()
        t = self.t_logits[idx]
        budget = losses.cosine_budget(progress, p.budget)
        with torch.enable_grad():
            g = self._g(t, out.detach())
            slack = g.mean() - budget
            loss = self._scaffolded_loss(out.detach(), t, y, g) + self.dual * slack
            gate_opt.zero_grad(set_to_none=True)
            loss.backward()
            gate_opt.step()
        with torch.no_grad():  # tensors only: no GPU sync per step
            self.dual.copy_((self.dual + p.dual_lr * slack.detach()).clamp_min(0.0))
            self._last_gate = g.detach().mean()

    def _gate_optimizer(self) -> torch.optim.Optimizer:
        if self._gate_opt is None:  # made lazily: after .to(device) moved the gate
            self._gate_opt = torch.optim.Adam(self.gate.parameters(), lr=self.spec.disk.gate_lr)
        return self._gate_opt

    def checkpoint_state(self) -> dict[str, Tensor]:
        state = super().checkpoint_state() | {"dual": self.dual.detach()}
        for pid, st in self._gate_optimizer().state_dict()["state"].items():
            state |= {f"gate_opt.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()}
        return state

    def load_checkpoint_state(self, state: Mapping[str, Tensor]) -> None:
        opt_state: dict[int, dict[str, Tensor]] = {}
        for key, v in state.items():
            if key.startswith("gate_opt."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = v
        own = {k: v for k, v in state.items() if not k.startswith("gate_opt.") and k != "dual"}
        super().load_checkpoint_state(own)
        self.dual.copy_(state["dual"])
        opt = self._gate_optimizer()
        opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})

    def info(self) -> dict[str, Any]:
        return {
            "disk_top_k": int(self.k_),
            "disk_dual": float(self.dual),
            "disk_last_mean_gate": float(self._last_gate),
        }


def _layer_index(layer: int, n_layers: int, name: str) -> int:
    """A Python-style layer index (-1 = last) checked against ``n_layers``."""
    if not -n_layers <= layer < n_layers:
        raise ConfigError(
            f"amad: train.amad.{name}={layer} but the model has {n_layers} layers; use "
            f"0..{n_layers - 1} or -1 for the last"
        )
    return layer % n_layers


class AMAD(Method):
    """AMAD (Zhao et al. 2024): ``weight * attention_alignment(T, S) + KD terms``.

    T: the teacher's attention maps of ``teacher_layer`` for every training row, computed
    once by ``set_teacher_attention`` on the student's own token ids (text students use the
    teacher's tokenizer) and kept as float16, at most ``max_cache_mb``. S: the student's maps
    of ``student_layer``, caught by a forward hook on that layer's self-attention during the
    training forward; ``init_student`` switches the student to eager attention (the only kind
    that returns maps) and turns off attention dropout in that layer, so its maps are
    distributions (our choice). The loss covers real tokens only; batches cut to a narrower
    width than the cached maps take their top-left corner (padding attends nowhere).
    """

    name = "amad"

    def fit(self, teacher: TeacherData, emb_dim: int) -> AMAD:
        super().fit(teacher, emb_dim)
        self._require_class_signal(self.spec.amad.kd_weight, "amad")
        self.register_buffer("t_att", torch.zeros(0), persistent=False)
        self.register_buffer("t_mask", torch.zeros(0), persistent=False)
        self._captured: Tensor | None = None
        self._n = len(teacher.y)
        return self

    @torch.no_grad()
    def set_teacher_attention(
        self, encoder: nn.Module, inputs: Mapping[str, Tensor], batch_size: int = 64
    ) -> None:
        """Run ``encoder`` (a transformers model) over the training ``inputs`` once and keep
        the attention maps of ``teacher_layer`` (float16, CPU until ``.to(device)``)."""
        p = self.spec.amad
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        n, L = ids.shape
        if n != self._n:
            raise ValueError(f"amad: {n} input rows but the teacher data has {self._n}")
        cfg = encoder.config
        heads, n_layers = int(cfg.num_attention_heads), int(cfg.num_hidden_layers)
        layer = _layer_index(p.teacher_layer, n_layers, "teacher_layer")
        mb = n * heads * L * L * 2 / 2**20
        if mb > p.max_cache_mb:
            raise ConfigError(
                f"amad: the teacher's attention maps ({n:,} rows x {heads} heads x {L} x {L}, "
                f"float16) need {mb:,.0f} MB, over train.amad.max_cache_mb={p.max_cache_mb}; "
                "lower student.max_length or dataset.max_train, or raise max_cache_mb"
            )
        encoder.set_attn_implementation("eager")  # sdpa returns no maps
        encoder.eval()
        device = next(encoder.parameters()).device
        maps = torch.empty((n, heads, L, L), dtype=torch.float16)
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            res = encoder(
                input_ids=ids[sl].to(device), attention_mask=mask[sl].to(device),
                output_attentions=True,
            )  # fmt: skip
            maps[sl] = res.attentions[layer].to(torch.float16).cpu()
        self.t_att, self.t_mask = maps, mask.to(torch.float32).clone()
        self.info_ = {"amad_teacher_heads": heads, "amad_teacher_layer": layer}

    def init_student(self, student: nn.Module) -> None:
        from .students import unwrap

        bert = getattr(unwrap(student), "bert", None)
        if bert is None:
            raise ConfigError(
                "amad aligns attention maps: it needs student.kind 'transformer' (this student "
                f"is {type(unwrap(student)).__name__})"
            )
        p = self.spec.amad
        layers = bert.encoder.layer
        attn = layers[_layer_index(p.student_layer, len(layers), "student_layer")].attention.self
        bert.set_attn_implementation("eager")
        attn.dropout.p = 0.0

        def catch(_m: nn.Module, _inputs: Any, output: Any) -> None:
            self._captured = output[1]

        attn.register_forward_hook(catch)
        self.info_ |= {"amad_student_heads": int(bert.config.num_attention_heads)}

    def loss(
        self, out: Tensor, emb: Tensor | None, idx: Tensor, y: Tensor, progress: float
    ) -> Tensor:
        p = self.spec.amad
        s = self._captured
        if s is None or self.t_att.numel() == 0:
            raise RuntimeError(
                "amad: call set_teacher_attention and init_student before training (core."
                "methods.fit_for_run does both)"
            )
        w = s.shape[-1]
        t = self.t_att[idx, :, :w, :w]
        align = losses.attention_alignment(t, s, self.t_mask[idx, :w], p.variant)
        return p.weight * align + self._kd_terms(out, idx, y, p.kd_weight)


@torch.no_grad()
def predict_embeddings(
    student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 512
) -> Tensor:
    """The student's penultimate embeddings (n, h) on CPU: eval mode, batched, on the device
    of its parameters; its train/eval mode is kept. (Full-width token batches: the students'
    masked pooling makes padding harmless.)"""
    from .students import unwrap

    core = unwrap(student)
    device = next(core.parameters()).device
    n = next(iter(inputs.values())).shape[0]
    was_training = core.training
    core.eval()
    outs = []
    try:
        for i in range(0, n, batch_size):
            batch = {k: v[i : i + batch_size].to(device) for k, v in inputs.items()}
            outs.append(core.embed(batch).float().cpu())
    finally:
        core.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def predict_with_method(
    method: Method, student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 512
) -> tuple[Tensor, dict[str, float]]:
    """Per-class log-probabilities (n, C) on CPU as the method predicts (ReAugKD: with
    retrieval), and timings: ``predict_s`` (student forward) and, for retrieval,
    ``retrieval_s`` and ``retrieval_overhead_pct`` = 100 * retrieval_s / predict_s (the
    embedding pass is not counted: a deployed student gets it with its forward)."""
    from .train import predict

    t0 = time.perf_counter()
    raw = predict(student, inputs, batch_size=batch_size)
    timing = {"predict_s": time.perf_counter() - t0}
    log_probs = method.class_log_probs(raw)
    if type(method).augment is not Method.augment:
        emb = predict_embeddings(student, inputs, batch_size)
        t1 = time.perf_counter()
        log_probs = method.augment(log_probs, emb)
        timing["retrieval_s"] = time.perf_counter() - t1
        timing["retrieval_overhead_pct"] = (
            100.0 * timing["retrieval_s"] / max(timing["predict_s"], 1e-9)
        )
    return log_probs, timing


METHODS: dict[str, type[Method]] = {
    "fitnet": FitNet,
    "sea": SEA,
    "compress": CompRess,
    "reaugkd": ReAugKD,
    "subclass-distill": SubclassDistill,
    "dwt": DWT,
    "disk": DiSK,
    "amad": AMAD,
}


def make_method(spec: TrainSpec) -> Method:
    """The ``Method`` for ``spec.objective``; an unknown name lists the valid ones (hard, kd
    and lelp are handled by core/train.py directly and are not methods)."""
    try:
        cls = METHODS[spec.objective]
    except KeyError:
        valid = ", ".join(sorted(METHODS))
        raise ValueError(
            f"objective {spec.objective!r} is not a Method; valid names are: {valid}"
        ) from None
    return cls(spec)


#: What ``teacher.path`` must name for the teacher kinds that need one.
TEACHER_PATHS = {
    "hf": "the folder of a saved sequence-classification checkpoint",
    "arrays": "a .npz or .parquet file of teacher arrays",
}


def check_run(cfg: Any) -> None:
    """Refuse, before any work, a run that cannot work: a teacher without the path it needs,
    or an objective its teacher or student cannot serve (called by the Distill page before
    queueing, so such a job is never queued to fail later, and by ``fit_for_run``)."""
    what = TEACHER_PATHS.get(cfg.teacher.kind)
    if what is not None and not cfg.teacher.path:
        raise ConfigError(
            f"teacher kind {cfg.teacher.kind!r} needs teacher.path: {what}; give it on the "
            "Data & teacher page (or --set teacher.path=...)"
        )
    if cfg.train.objective != "amad":
        return
    if cfg.student.kind != "transformer":
        raise ConfigError(
            "amad aligns attention maps: it needs student.kind 'transformer' (got "
            f"{cfg.student.kind!r})"
        )
    if cfg.teacher.kind not in ("minilm", "hf"):
        raise ConfigError(
            "amad needs the teacher's attention maps: use teacher.kind minilm or hf "
            f"(got {cfg.teacher.kind})"
        )


def fit_for_run(
    method: Method, cfg: Any, dataset: Any, out: Any, eval_split: str, student: nn.Module,
    train_inputs: Mapping[str, Tensor] | None = None, teacher_model: nn.Module | None = None,
    encoder_dir: str | None = None,
) -> Method:  # fmt: skip
    """Fit ``method`` for one pipeline run and prepare its freshly built ``student``.

    ``cfg``: the ``RunConfig``; ``dataset``/``out``: the ``Dataset`` and ``TeacherOutputs``.
    The embedding width is the student head's input width. AMAD gets the teacher's attention
    maps over ``train_inputs`` (``teacher_model``, or the teacher's encoder loaded here, from
    ``encoder_dir`` for a fine-tuned MiniLM). DWT
    with ``remap`` rebuilds the
    digits-mlp teacher's layers (``digits_teacher_layers``); other teachers cannot be
    remapped yet and get a ConfigError naming the fix.
    """
    from .students import unwrap

    tr, ev = dataset.splits["train"], dataset.splits[eval_split]
    teacher = TeacherData(
        H=np.asarray(out.H["train"], dtype=np.float32),
        Z=np.asarray(out.Z["train"], dtype=np.float32),
        y=np.asarray(tr.y),
        H_eval=np.asarray(out.H[eval_split], dtype=np.float32),
        Z_eval=np.asarray(out.Z[eval_split], dtype=np.float32),
        y_eval=np.asarray(ev.y),
    )
    method.fit(teacher, emb_dim=int(unwrap(student).head.in_features))
    if isinstance(method, DWT) and cfg.train.dwt.remap:
        if cfg.teacher.kind != "digits-mlp" or cfg.student.kind != "mlp":
            raise ConfigError(
                "train.dwt.remap=true is implemented for teacher.kind=digits-mlp with "
                f"student.kind=mlp (got {cfg.teacher.kind} / {cfg.student.kind}); for a "
                "transformer student use student.init=teacher, or set train.dwt.remap=false"
            )
        layers = digits_teacher_layers(
            tr.features,
            tr.y,
            dataset.n_classes,
            cfg.teacher.hidden,
            cfg.teacher.seed,
            teacher.H,
        )
        method.set_teacher_layers(layers)
    if isinstance(method, AMAD):
        check_run(cfg)
        if train_inputs is None or "input_ids" not in train_inputs:
            raise ConfigError("amad needs a text dataset (token ids for teacher and student)")
        from .teachers import load_teacher_encoder, pick_device

        if teacher_model is None:
            teacher_model = load_teacher_encoder(cfg.teacher, encoder_dir)
        dev = cfg.train.device
        teacher_model.to(pick_device() if dev == "auto" else torch.device(dev))
        method.set_teacher_attention(teacher_model, train_inputs)
    method.init_student(student)
    return method


def is_method(objective: str) -> bool:
    return objective in METHODS
