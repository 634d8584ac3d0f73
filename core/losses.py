"""Distillation losses: one small named function per objective (see ../shared/STYLE.md).

Each function takes tensors (student logits, precomputed teacher outputs or targets, a
temperature) and returns a scalar averaged over the batch. A loss never runs the teacher.
The objectives (``core.objectives``, whose registry maps config names to classes) combine
them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def hard(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy with the ground-truth class ids: the no-distillation baseline.

    Parameters: ``logits`` (B, C), ``y`` (B,) int64; rows with ``y < 0`` (unlabeled transfer
    rows) carry no label and are left out. Returns the mean over the labeled rows (0 when a
    batch has none; our choice: the hard term keeps its meaning, the mean cross-entropy of
    the labeled rows, however many transfer rows share the batch).

    >>> round(float(hard(torch.zeros(1, 2), torch.tensor([0]))), 4)  # log 2
    0.6931
    >>> round(float(hard(torch.zeros(2, 2), torch.tensor([0, -1]))), 4)  # the labeled row only
    0.6931
    """
    return masked_nll(F.log_softmax(logits.float(), dim=-1), y)


def masked_nll(log_probs: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood of the labels ``y`` over the rows with ``y >= 0`` (0 for
    none), computed without reading any value back from the device (no data-dependent
    branch: a per-step GPU sync would cost more than the loss)."""
    y = y.long()
    known = y >= 0
    nll = -log_probs.gather(-1, y.clamp_min(0).view(-1, 1)).squeeze(-1)
    return (nll * known).sum() / known.sum().clamp_min(1)


def kd(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """Vanilla knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge
    in a Neural Network", arXiv 1503.02531).

    ``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``, averaged over the batch.

    Parameters: ``student_logits`` (B, C), ``teacher_logits`` (B, C), ``tau`` > 0.
    """
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    # KL(p_t || p_s) summed over classes, mean over the batch ("batchmean" is the true KL;
    # "mean" would also divide by C).
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    # tau^2: the soft-target gradients scale as 1/tau^2 (Hinton et al. 2015, Sec. 2), so this
    # keeps their size comparable across temperatures and next to a hard-label term.
    return tau**2 * kl


def lelp(student_logits: Tensor, targets: Tensor, tau: float) -> Tensor:
    """LELP subclass loss (Loo, Iliopoulos, Hu & Vee 2024, "Linear Projections of Teacher
    Embeddings for Few-Class Distillation", arXiv 2409.20449; ../shared/LELP.md step 6).

    ``tau^2 * CE(targets, softmax(u / tau))`` over the ``sum_c S_c`` student outputs in
    class-major order, averaged over the batch. Also used for clustering, oracle or manual
    subclass targets: any non-negative rows summing to 1 work.

    Parameters: ``student_logits`` u (B, sum S_c), ``targets`` (B, sum S_c), ``tau`` > 0.
    """
    log_q = F.log_softmax(student_logits.float() / tau, dim=-1)
    ce = -(targets.float() * log_q).sum(dim=-1).mean()
    # tau^2: same gradient-scale correction as in KD (Hinton et al. 2015); the LELP paper keeps
    # it so that tau can be changed without retuning the learning rate.
    return tau**2 * ce


def class_log_probs(u: Tensor, sizes: Sequence[int], tau: float) -> Tensor:
    """Per-class log-probabilities from subclass logits (../shared/LELP.md step 7; Loo et al.
    2024, arXiv 2409.20449).

    ``P(c | x) = sum over class c's block of softmax(u / tau)``, i.e.
    ``logsumexp(u[c-block] / tau) - logsumexp(u / tau)``. Dividing by ``tau`` BEFORE the
    logsumexp matters: taking logsumexp of the raw logits when tau != 1 gives a different
    distribution (and different argmax) and cost up to 10 accuracy points.

    Parameters: ``u`` (B, sum S_c) class-major, ``sizes`` the S_c per class, ``tau`` > 0.
    Returns (B, C) log-probabilities; ``exp`` of each row sums to 1.
    """
    sizes = [int(s) for s in sizes]
    if u.shape[-1] != sum(sizes):
        raise ValueError(
            f"class_log_probs: u has {u.shape[-1]} columns but sizes {sizes} sum to "
            f"{sum(sizes)}; the student head must have sum(sizes) outputs"
        )
    log_q = F.log_softmax(u.float() / tau, dim=-1)
    blocks = torch.split(log_q, sizes, dim=-1)
    return torch.stack([b.logsumexp(dim=-1) for b in blocks], dim=-1)


def with_hard(loss: Tensor, class_logits: Tensor, y: Tensor, alpha: float) -> Tensor:
    """``loss + alpha * CE(y, class_logits)``: adds the ground-truth term (LELP.md step 6).

    ``class_logits`` may be logits or normalised log-probabilities (cross-entropy's
    log-softmax leaves the latter unchanged). ``alpha = 0`` (the paper's setting) returns
    ``loss`` untouched, without computing the extra term.
    """
    if alpha == 0:
        return loss
    return loss + alpha * hard(class_logits, y)


# ---- the seed papers' other objectives (used by core/objectives) ----


def embedding_mse(pred: Tensor, target: Tensor, normalize: bool = False) -> Tensor:
    """Embedding regression for FitNet hints (Romero et al. 2015, "FitNets: Hints for Thin
    Deep Nets", ICLR) and SEA (Srivastava et al. 2021, ICASSP).

    ``mean((pred - target)^2)`` over batch AND features (``F.mse_loss``), so the scale does not
    grow with the teacher's width. ``normalize=True`` first L2-normalises both rows, which makes
    the loss ``2 (1 - cos) / d`` per row (``||a - b||^2 = 2 - 2 cos`` for unit rows, then the
    mean over d features), averaged over the batch, and insensitive to the embedding norm.

    Parameters: ``pred`` (B, d) the mapped student embedding, ``target`` (B, d).
    """
    pred, target = pred.float(), target.float()
    if pred.shape != target.shape:
        raise ValueError(
            f"embedding_mse: prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
            "differ; map the student embedding to the target width first"
        )
    if normalize:
        pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    return F.mse_loss(pred, target)


def similarity_kl(
    query_s: Tensor,
    query_t: Tensor,
    anchors_s: Tensor,
    anchors_t: Tensor,
    temperature: float,
    mask: Tensor | None = None,
) -> Tensor:
    """CompRess similarity-distribution matching (Abbasi Koohpayegani, Tejankar & Pirsiavash
    2020, "CompRess: Self-Supervised Learning by Compressing Representations", NeurIPS).

    ``p_t = softmax(A_t q_t / T)``, ``p_s = softmax(A_s q_s / T)`` over the K anchors,
    ``KL(p_t || p_s)`` averaged over the batch. Queries and anchors are L2-normalised here
    (the paper's cosine similarities), so callers may pass raw embeddings. No ``T^2`` factor:
    the paper uses the plain KL at T = 0.04. ``mask`` (B, K) True marks anchors to ignore for
    a query (e.g. itself when a batch serves as its own anchors).

    Parameters: ``query_s`` (B, d_s), ``query_t`` (B, d_t), ``anchors_s`` (K, d_s),
    ``anchors_t`` (K, d_t); for the one-queue variant pass the teacher anchors for both and
    the student query mapped to d_t.
    """
    qs, qt = F.normalize(query_s.float(), dim=-1), F.normalize(query_t.float(), dim=-1)
    a_s, a_t = F.normalize(anchors_s.float(), dim=-1), F.normalize(anchors_t.float(), dim=-1)
    logit_s, logit_t = qs @ a_s.T / temperature, qt @ a_t.T / temperature
    if mask is not None:
        # A large negative instead of -inf keeps 0 * (-inf) = NaN out of the KL.
        logit_s = logit_s.masked_fill(mask, -1e4)
        logit_t = logit_t.masked_fill(mask, -1e4)
    return F.kl_div(
        F.log_softmax(logit_s, dim=-1),
        F.log_softmax(logit_t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


def relational_kl(student_query: Tensor, teacher_keys: Tensor, temperature: float) -> Tensor:
    """ReAugKD's relational loss (Zhang, Lou, Tang, Schuurmans & Le 2023, "ReAugKD:
    Retrieval-Augmented Knowledge Distillation for Pre-trained Language Models", ACL; the
    exact form is our choice, ../shared/METHODS.md).

    Within a batch, ``KL(softmax(cos(t_i, t_j) / T) || softmax(cos(s_i, t_j) / T))`` over j,
    averaged over i: the student query must rank the teacher keys as the teacher's own key
    does, which is what retrieval at inference needs. The diagonal (j = i) is kept: finding
    one's own key is the point. Zero when each ``s_i`` points along ``t_i``.

    Parameters: ``student_query`` (B, d) and ``teacher_keys`` (B, d), same width.
    """
    s, t = F.normalize(student_query.float(), dim=-1), F.normalize(teacher_keys.float(), dim=-1)
    log_p_t = F.log_softmax(t @ t.T / temperature, dim=-1)
    log_p_s = F.log_softmax(s @ t.T / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def supcon(z: Tensor, y: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, NeurIPS; the "L_out" form), used to
    train ReAugKD's teacher-side projection: examples with the same label are positives.

    ``-mean_i 1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p/T) / sum_{a != i} exp(z_i.z_a/T))``
    on L2-normalised rows; anchors without a positive in the batch are skipped (0 if none).

    Parameters: ``z`` (B, d), ``y`` (B,) class ids.
    """
    z = F.normalize(z.float(), dim=-1)
    b = z.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, -1e4)  # exclude a == i
    log_prob = logits - logits.logsumexp(dim=-1, keepdim=True)
    pos = (y.view(-1, 1) == y.view(1, -1)) & ~eye
    n_pos = pos.sum(dim=-1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob * pos).sum(dim=-1)[has] / n_pos[has]
    return per_anchor.mean()


def subclass_log_probs(u: Tensor, n_subclasses: int) -> Tensor:
    """Class log-probabilities of a Subclass Distillation network (Müller, Kornblith & Hinton
    2020, "Subclass Distillation", arXiv 2002.03936): class logit = logsumexp of its S
    subclass logits (class-major blocks), then log-softmax over classes. Equals
    ``class_log_probs(u, [S] * C, 1.0)``. Returns (B, C)."""
    b, cs = u.shape
    if cs % n_subclasses:
        raise ValueError(
            f"subclass_log_probs: {cs} outputs are not a multiple of n_subclasses={n_subclasses}"
        )
    class_logits = u.float().view(b, cs // n_subclasses, n_subclasses).logsumexp(dim=-1)
    return F.log_softmax(class_logits, dim=-1)


def subclass_aux(u: Tensor, temperature: float = 1.0) -> Tensor:
    """Subclass Distillation's auxiliary loss that spreads examples over subclasses (Müller et
    al. 2020, Sec. 3; ../shared/METHODS.md).

    Each row of subclass logits is standardised (zero mean, unit POPULATION variance across
    its C*S entries, as ``tf.nn.moments`` in the reference code) and scaled by
    ``1 / sqrt(T * C*S)``, so ``z_i . z_i = 1/T``. Loss:
    ``mean_i logsumexp_j(z_i . z_j) - 1/T - log B``. It is 0 when all rows are equal and
    negative when they are spread out (its minimum pushes rows apart).

    Parameters: ``u`` (B, C*S) teacher subclass logits, ``temperature`` T (1 in the paper).
    """
    u = u.float()
    b, cs = u.shape
    mean = u.mean(dim=-1, keepdim=True)
    var = u.var(dim=-1, unbiased=False, keepdim=True)
    z = (u - mean) / torch.sqrt(var + 1e-8) / math.sqrt(temperature * cs)
    sims = z @ z.T
    return sims.logsumexp(dim=-1).mean() - 1.0 / temperature - math.log(b)


def subclass_distill(
    student_sub: Tensor,
    teacher_sub: Tensor,
    y: Tensor,
    n_subclasses: int,
    tau: float = 4.0,
    alpha: float = 0.5,
) -> Tensor:
    """Subclass Distillation student loss (Müller, Kornblith & Hinton 2020):
    ``alpha * tau^2 * CE(softmax(t_sub / tau), softmax(s_sub / tau)) + (1 - alpha) *
    CE(y, class logits)`` with class logits = logsumexp over each class's S subclass logits.

    A cross-entropy, not a KL, as in the paper: equal logits give ``tau^2 * alpha *
    H(softmax(t_sub / tau))`` plus the hard term, with a zero soft-term gradient. ``tau^2``
    keeps the soft gradients' size independent of tau (Hinton et al. 2015).

    Parameters: ``student_sub``, ``teacher_sub`` (B, C*S) class-major; ``y`` (B,).
    """
    log_q = F.log_softmax(student_sub.float() / tau, dim=-1)
    p_t = F.softmax(teacher_sub.float() / tau, dim=-1)
    soft = -(p_t * log_q).sum(dim=-1).mean()
    hard_term = masked_nll(subclass_log_probs(student_sub, n_subclasses), y)
    return alpha * tau**2 * soft + (1.0 - alpha) * hard_term


def linear_schedule(progress: float, start: float, end: float) -> float:
    """``start`` at progress 0, ``end`` at 1, linear in between (DWT's decaying soft weight,
    Lee et al. 2023: a large soft-loss weight early speeds convergence, a normal one ends
    higher). ``progress`` is clipped to [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return start + (end - start) * p


def cosine_budget(progress: float, budget: float) -> float:
    """DiSK's censoring budget (Kag et al. 2023): ``budget * (1 + cos(pi * progress)) / 2``,
    from ``budget`` at the start to 0 at the end, so the student is finally trained without
    help. ``progress`` is clipped to [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return budget * 0.5 * (1.0 + math.cos(math.pi * p))


def top_k_mask(teacher_logits: Tensor, y: Tensor, k: int) -> Tensor:
    """(B, C) bool: the teacher's top-``k`` classes and the true class (DiSK's boosted set);
    an unlabeled row (``y < 0``) has the teacher's top-``k`` only."""
    idx = teacher_logits.topk(min(k, teacher_logits.shape[-1]), dim=-1).indices
    mask = torch.zeros_like(teacher_logits, dtype=torch.bool).scatter_(-1, idx, True)
    y = y.long().view(-1, 1)
    return mask.scatter_(-1, y.clamp_min(0), (y >= 0) | mask.gather(-1, y.clamp_min(0)))


def scaffold_logits(student_logits: Tensor, gate: Tensor, mask: Tensor, boost: float) -> Tensor:
    """DiSK's scaffolded student (Kag, Fedorov, Gangrade, Whatmough & Saligrama 2023,
    "Scaffolding a Student to Instill Knowledge", ICLR): add ``boost * g(x)`` to the student's
    logits on the classes in ``mask``, i.e. multiply their probabilities by ``exp(boost * g)``
    before renormalising (our choice of boost: additive in logit space, so g = 0 is the plain
    student and g = 1 a fixed, bounded help).

    Parameters: ``student_logits`` (B, C), ``gate`` (B,) in [0, 1], ``mask`` (B, C) bool.
    """
    return student_logits.float() + boost * gate.float().view(-1, 1) * mask.float()


def retrieval_mix(
    student_log_probs: Tensor,
    neighbour_teacher_probs: Tensor,
    neighbour_sims: Tensor,
    lam: float,
    temperature: float,
) -> Tensor:
    """ReAugKD's retrieval-augmented prediction (Zhang et al. 2023): ``p = lam * sum_j w_j
    p_t(j) + (1 - lam) * p_s`` with ``w = softmax(sim / temperature)`` over the k neighbours.
    Returns log-probabilities (B, C); ``lam = 0`` gives the student's own.

    Parameters: ``student_log_probs`` (B, C), ``neighbour_teacher_probs`` (B, k, C),
    ``neighbour_sims`` (B, k) cosine similarities.
    """
    w = F.softmax(neighbour_sims.float() / temperature, dim=-1)
    p_kb = (w.unsqueeze(-1) * neighbour_teacher_probs.float()).sum(dim=1)
    p = lam * p_kb + (1.0 - lam) * student_log_probs.float().exp()
    return p.clamp_min(1e-12).log()


def attention_alignment(
    teacher_maps: Tensor, student_maps: Tensor, mask: Tensor, variant: str = "kl"
) -> Tensor:
    """AMAD attention-map alignment (Zhao et al., AAAI 2024; the formulas of
    ../shared/METHODS.md) for a student with fewer attention heads than its teacher.

    Each teacher head's map ``t_i`` (flattened over the real query-key pairs) is matched by a
    mix of the student's heads ``s_j`` with weights ``a_ij = softmax_j(cos(t_i, s_j))``:

    - ``l2`` (METHODS.md's formula): ``sum_i || t_i/|t_i| - sum_j a_ij s_j/|s_j| ||^2``;
    - ``kl`` (the paper's best): ``KL(t_i[r] || sum_j a_ij s_j[r])`` per real query row r,
      averaged over rows, summed over teacher heads. The mix of row-stochastic maps is one, so
      this compares attention distributions directly (clamped at 1e-8 where dropout zeroed
      every head).

    Averaged over the batch. Zero when every head of both models draws the same map.

    Parameters: ``teacher_maps`` (B, H_t, L, L), ``student_maps`` (B, H_s, L, L) attention
    probabilities of one layer each; ``mask`` (B, L) 1 for real tokens, 0 for padding.
    """
    if variant not in ("kl", "l2"):
        raise ValueError(f"attention_alignment: variant must be 'kl' or 'l2'; got {variant!r}")
    t, s = teacher_maps.float(), student_maps.float()
    if t.shape[0] != s.shape[0] or t.shape[2:] != s.shape[2:]:
        raise ValueError(
            f"attention_alignment: teacher maps {tuple(t.shape)} and student maps "
            f"{tuple(s.shape)} must share batch and (L, L)"
        )
    m = mask.float()
    pairs = (m[:, :, None] * m[:, None, :]).unsqueeze(1)  # (B, 1, L, L): real query-key pairs
    t, s = t * pairs, s * pairs
    t_flat, s_flat = t.flatten(2), s.flatten(2)  # (B, H, L*L)
    t_hat, s_hat = F.normalize(t_flat, dim=-1), F.normalize(s_flat, dim=-1)
    a = F.softmax(t_hat @ s_hat.transpose(1, 2), dim=-1)  # (B, H_t, H_s)
    if variant == "l2":
        return ((t_hat - a @ s_hat) ** 2).sum(dim=(1, 2)).mean()
    mix = (a @ s_flat).view_as(t)  # (B, H_t, L, L), rows sum to 1 on real rows
    kl = (t * (t.clamp_min(1e-8).log() - mix.clamp_min(1e-8).log())).sum(-1)  # (B, H_t, L)
    rows = m.sum(-1).clamp_min(1.0)  # real query rows per example
    return ((kl * m.unsqueeze(1)).sum(-1) / rows.unsqueeze(1)).sum(1).mean()
