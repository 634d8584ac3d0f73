"""CompRess: match the teacher's similarity distribution over queued anchor embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import CompRessSpec
from .base import Batch, Objective, RunContext, TeacherData, TeacherRows, embedding_width


class EmbeddingQueue(nn.Module):
    """A FIFO of the last ``size`` embedding rows (CompRess's anchor memory).

    ``push(x)`` appends rows, overwriting the oldest once full (a batch larger than the queue
    keeps its last ``size`` rows); ``items()`` returns the stored rows oldest first. A buffer,
    so ``.to(device)`` moves it; pushes never build autograd graphs (rows are detached).

    >>> q = EmbeddingQueue(2, 1); q.push(torch.tensor([[1.0], [2.0], [3.0]])); q.items().ravel()
    tensor([2., 3.])
    """

    buf: Tensor

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

    def queue_state(self) -> dict[str, Tensor]:
        """The rows and the write position, for a resumed run to continue the same queue."""
        return {"buf": self.buf, "pos": torch.tensor([self.ptr, self.count])}

    def load_queue_state(self, state: Mapping[str, Tensor]) -> None:
        self.buf.copy_(state["buf"])
        self.ptr, self.count = (int(v) for v in state["pos"])

    def items(self) -> Tensor:
        if self.count < self.size:
            return self.buf[: self.count]
        return torch.cat([self.buf[self.ptr :], self.buf[: self.ptr]])


class CompRess(Objective):
    """CompRess: both networks keep FIFO queues of their own past L2-normalised embeddings;
    the student matches the teacher's distribution of similarities to these anchors,
    KL(softmax(Q_t h_t / T) || softmax(Q_s h_s / T)) with T = 0.04, plus KD for the head.
    The one-queue variant uses the teacher's queue for both, with the student embedding
    mapped to the teacher's width. Abbasi Koohpayegani, Tejankar & Pirsiavash, 'CompRess:
    Self-Supervised Learning by Compressing Representations', NeurIPS 2020.

    Our choices: queue size ``min(128000, n_train)`` unless set; the queues start empty and,
    while they are, a batch serves as its own anchors with each query's own row masked out
    (so the first step already has a signal); the teacher queue holds teacher embeddings of
    the same rows as the student queue (pushed together after each step, ``after_step``);
    one-queue maps the student embedding to the teacher's width with a learned linear map.
    The head is trained by the KD terms (the paper evaluates with a linear probe instead).
    """

    name = "compress"
    uses_transfer = True
    section = "compress"
    needs_embedding = True
    params: CompRessSpec
    t_emb: TeacherRows
    map: nn.Linear
    queue_s: EmbeddingQueue

    def setup(self, teacher: TeacherData) -> CompRess:
        super().setup(teacher)
        self._require_class_signal(self.params.kd_weight)
        self._H = self._require_embeddings(teacher)
        return self

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        self.build(embedding_width(student))

    def build(self, emb_dim: int) -> CompRess:
        """Teacher anchors, queues and (one-queue) the map for an ``emb_dim`` student."""
        p = self.params
        H = self._H
        # normalised teacher rows, read and cast per batch (no (n, d) float32 copy of H)
        self.t_emb = TeacherRows(H, normalize=True)
        size = p.queue_size or min(128_000, H.shape[0])
        self.queue_t = EmbeddingQueue(size, H.shape[1])
        if p.queues == "one":
            self.map = nn.Linear(emb_dim, H.shape[1])
        else:
            self.queue_s = EmbeddingQueue(size, emb_dim)
        self.info_ = {"compress_queue_size": int(size), "compress_queues": p.queues}
        return self

    def extra_modules(self) -> list[nn.Module]:
        return [self.map] if self.params.queues == "one" else []

    def _query_s(self, emb: Tensor) -> Tensor:
        q = self.map(emb.float()) if self.params.queues == "one" else emb.float()
        return F.normalize(q, dim=-1)

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        p = self.params
        assert batch.emb is not None  # needs_embedding: the loop passes it
        q_s, q_t = self._query_s(batch.emb), self.t_emb[batch.idx]
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
        return p.weight * sim + self._kd_terms(out, batch, p.kd_weight)

    def _queues(self) -> dict[str, EmbeddingQueue]:
        names = ("queue_t", "queue_s") if self.params.queues == "two" else ("queue_t",)
        return {n: getattr(self, n) for n in names}

    # nn.Module's overloads (generic `destination`) cannot be restated; arguments pass through
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The map's weights plus each queue's rows and write position."""
        state = dict(super().state_dict(*args, **kwargs))
        for name, q in self._queues().items():
            state |= {f"{name}.{k}": v for k, v in q.queue_state().items()}
        return state

    # callers pass the state positionally; `assign` passes through **kw
    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        queues = self._queues()
        own = {k: v for k, v in state.items() if k.split(".", 1)[0] not in queues}
        res = super().load_state_dict(own, strict=strict, **kw)
        for name, q in queues.items():
            prefix = f"{name}."
            q.load_queue_state(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        return res

    @torch.no_grad()
    def after_step(self, out: Tensor, batch: Batch) -> None:
        self.queue_t.push(self.t_emb[batch.idx])
        if self.params.queues == "two":
            assert batch.emb is not None  # needs_embedding: the loop passes it
            self.queue_s.push(self._query_s(batch.emb))
