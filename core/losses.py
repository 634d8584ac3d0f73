"""Distillation losses: one small named function per objective (see ../shared/STYLE.md).

Each function takes tensors (student logits, precomputed teacher outputs or targets, a
temperature) and returns a scalar averaged over the batch. A loss never runs the teacher.
``LOSSES`` maps the config name (``train.objective``) to the function; ``get_loss`` looks a
name up and lists the valid ones when it is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def hard(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy with the ground-truth class ids: the no-distillation baseline.

    Parameters: ``logits`` (B, C), ``y`` (B,) int64. Returns the batch mean.

    >>> round(float(hard(torch.zeros(1, 2), torch.tensor([0]))), 4)  # log 2
    0.6931
    """
    return F.cross_entropy(logits.float(), y.long())


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


LOSSES: dict[str, Callable[..., Tensor]] = {"hard": hard, "kd": kd, "lelp": lelp}


def get_loss(name: str) -> Callable[..., Tensor]:
    """The loss function for a config name; an unknown name lists the valid ones."""
    try:
        return LOSSES[name]
    except KeyError:
        valid = ", ".join(sorted(LOSSES))
        raise ValueError(f"unknown loss {name!r}; valid names are: {valid}") from None
