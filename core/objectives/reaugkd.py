"""ReAugKD: relational loss + KD in training, retrieval from a knowledge base at inference."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import ReAugKDSpec
from .base import (
    Batch,
    Objective,
    RunContext,
    TeacherData,
    TeacherRows,
    embedding_width,
    float32_blocks,
)


class ReAugKD(Objective):
    """ReAugKD: a linear projection of the teacher embedding to the student's width is
    trained with a supervised contrastive loss; the projected training embeddings and the
    teacher's soft labels form a knowledge base. The student learns a relational loss (its
    similarities to teacher keys match the teacher's own) plus KD, and at inference mixes its
    prediction with the soft labels of its k nearest knowledge-base entries (weight lambda).
    Zhang, Lou, Tang, Schuurmans & Le, 'ReAugKD: Retrieval-Augmented Knowledge Distillation
    For Pre-trained Language Models', ACL 2023.

    ``attach`` trains the projection P (``nn.Linear(d_t, emb_dim)``, no bias) with the
    supervised contrastive loss on the cached embeddings (Adam, ``proj_epochs`` epochs of
    batches of 512, seeded), then builds the knowledge base: keys ``normalize(P h_t)`` and the
    teacher's soft labels ``softmax(z_t)`` (T = 1), indexed by scikit-learn's
    ``NearestNeighbors`` (euclidean on unit vectors = cosine ranking). Our choice: a learned
    square map B turns the (post-ReLU) student embedding into the query ``normalize(B h_s)``.
    On training rows an example retrieves itself, so train-split fidelity with retrieval is
    optimistic by design.
    """

    name = "reaugkd"
    uses_transfer = True
    section = "reaugkd"
    needs_embedding = True
    uses_embeddings_to_predict = True
    STATE_KEYS = ("proj.weight", "query.weight", "query.bias")
    params: ReAugKDSpec
    keys: Tensor

    def setup(self, teacher: TeacherData) -> ReAugKD:
        super().setup(teacher)
        self._require_class_signal(self.params.kd_weight)
        self._teacher = teacher
        self._require_embeddings(teacher)
        return self

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        self.fit_maps(embedding_width(student))

    def fit_maps(self, emb_dim: int) -> ReAugKD:
        """Train P, build the knowledge base and the query map B for ``emb_dim``."""
        teacher = self._teacher
        H = TeacherRows(teacher.H)  # each batch's rows cast when read; H is not copied
        # transfer rows (y = -1) take the teacher's class, as LELP's class-conditional sets do
        y = torch.as_tensor(teacher.classes, dtype=torch.long)
        t0 = time.perf_counter()
        self.proj = nn.Linear(H.shape[1], emb_dim, bias=False)
        self.proj_loss_ = self._train_projection(H, y)
        self.proj.requires_grad_(False)
        self.build_knowledge_base(teacher.H, teacher.Z, n_index=teacher.n_labeled)
        self.query = nn.Linear(emb_dim, emb_dim)
        self.info_ = {
            "reaugkd_kb_size": int(teacher.n_labeled),
            "reaugkd_fit_s": time.perf_counter() - t0,
            "reaugkd_supcon_loss": self.proj_loss_,
            "reaugkd_retrieval_s": 0.0,
        }
        return self

    def build_knowledge_base(self, H: Any, Z: np.ndarray, n_index: int | None = None) -> ReAugKD:
        """Keys ``normalize(P h_t)``, soft labels ``softmax(z_t)`` and their k-NN index, from
        the training split's teacher arrays. Why separate from ``fit_maps``: a saved run keeps
        only P and B (``state_tensors``), and the knowledge base is rebuilt from the cached
        teacher outputs when the run is replayed (``replay.load_reaugkd``).

        ``n_index``: only the first rows (the labeled training rows) are retrieved from; the
        keys of the rest (transfer rows) serve the relational loss only. Our choice: the
        retrieval a finished run replays, and the neighbours the app lists, are labeled
        training rows whatever transfer set the run trained on."""
        from sklearn.neighbors import NearestNeighbors

        # np.array copies: cached teacher arrays are read-only memory maps
        Zt = torch.from_numpy(np.array(Z, dtype=np.float32))
        shape = tuple(np.shape(H))
        if len(shape) != 2 or shape[1] != self.proj.in_features or Zt.shape[0] != shape[0]:
            raise ValueError(
                f"reaugkd: teacher H {shape} / Z {tuple(Zt.shape)} do not fit the "
                f"projection ({self.proj.in_features}-d input, one Z row per H row); use the "
                "teacher outputs the run was trained on (its artifacts' teacher_key)"
            )
        dev = self.proj.weight.device
        with torch.no_grad():  # keys from float32 blocks of H (H itself is never cast whole)
            keys = torch.cat(
                [
                    F.normalize(self.proj(torch.from_numpy(b).to(dev)), dim=-1)
                    for b in float32_blocks(H)
                ]
            )
        self.register_buffer("keys", keys, persistent=False)
        m = shape[0] if n_index is None else max(1, min(int(n_index), shape[0]))
        self.kb_probs = F.softmax(Zt[:m], -1)
        k = min(self.params.k, m)
        self.index_ = NearestNeighbors(n_neighbors=k).fit(keys[:m].cpu().numpy())
        self.info_.setdefault("reaugkd_retrieval_s", 0.0)
        return self

    def _train_projection(self, H: TeacherRows, y: Tensor) -> float:
        p = self.params
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
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

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        p = self.params
        assert batch.emb is not None  # needs_embedding: the loop passes it
        rel = losses.relational_kl(
            self.query(batch.emb.float()), self.keys[batch.idx], p.temperature
        )
        return p.weight * rel + self._kd_terms(out, batch, p.kd_weight)

    @torch.no_grad()
    def neighbours(self, emb: Tensor, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest knowledge-base rows to each student embedding: ``(indices (B, k)
        into the training split, cosine similarities (B, k))``, nearest first."""
        q = F.normalize(self.query(emb.float().to(self.keys.device)), dim=-1).cpu().numpy()
        dist, ind = self.index_.kneighbors(q, n_neighbors=k or self.index_.n_neighbors)
        return ind, 1.0 - dist**2 / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors

    def augment(self, log_probs: Tensor, emb: Tensor | None) -> Tensor:
        p = self.params
        t0 = time.perf_counter()
        assert emb is not None  # uses_embeddings_to_predict: predict passes them
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
