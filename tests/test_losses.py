"""Golden values and invariants for core/losses.py (numbers computed by hand in comments)."""

from __future__ import annotations

import math

import pytest
import torch

from lelp_studio import losses

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def test_hard_golden() -> None:
    # softmax([0, ln 3]) = [1/4, 3/4]: CE(y=0) = ln 4, CE(y=1) = ln(4/3); mean of both.
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]])
    got = losses.hard(logits, torch.tensor([0, 1]))
    assert got.item() == pytest.approx((LN4 + math.log(4 / 3)) / 2, abs=1e-6)
    assert got.item() == pytest.approx(0.8369882, abs=1e-6)


@pytest.mark.parametrize(
    ("teacher", "tau", "expected"),
    [
        # p_t = [1/4, 3/4], p_s = [1/2, 1/2]: KL = 3/4 ln(3/2) - 1/4 ln 2 = 0.1308120
        ([0.0, LN3], 1.0, 0.1308120),
        # teacher / 2 gives the same p_t; times tau^2 = 4
        ([0.0, 2 * LN3], 2.0, 0.5232481),
    ],
)
def test_kd_golden(teacher: list[float], tau: float, expected: float) -> None:
    s = torch.zeros(1, 2)
    got = losses.kd(s, torch.tensor([teacher]), tau)
    assert got.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kd_zero_with_zero_gradient_when_student_equals_teacher(tau: float) -> None:
    t = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])
    s = t.clone().requires_grad_(True)
    loss = losses.kd(s, t, tau)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert s.grad is not None
    assert torch.allclose(s.grad, torch.zeros_like(s.grad), atol=1e-6)


def test_kd_positive_when_different() -> None:
    assert losses.kd(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), 1.0).item() > 0


@pytest.mark.parametrize(
    ("u", "tau", "expected"),
    [
        # softmax([0, 0, ln2, ln4]) = [1/8, 1/8, 1/4, 1/2]; targets [1/2, 0, 0, 1/2]:
        # CE = 1/2 ln 8 + 1/2 ln 2 = ln 4
        ([0.0, 0.0, LN2, LN4], 1.0, LN4),
        # u doubled with tau = 2: same softmax, times tau^2 = 4
        ([0.0, 0.0, 2 * LN2, 2 * LN4], 2.0, 4 * LN4),
    ],
)
def test_lelp_golden(u: list[float], tau: float, expected: float) -> None:
    targets = torch.tensor([[0.5, 0.0, 0.0, 0.5]])
    got = losses.lelp(torch.tensor([u]), targets, tau)
    assert got.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_lelp_minimum_is_target_entropy(tau: float) -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 6, generator=g), dim=-1)
    u_star = (tau * p.log()).requires_grad_(True)  # softmax(u*/tau) == p
    best = losses.lelp(u_star, p, tau)
    entropy = -(p * p.log()).sum(-1).mean()
    assert best.item() == pytest.approx(tau**2 * entropy.item(), abs=1e-5)
    best.backward()
    assert torch.allclose(u_star.grad, torch.zeros_like(u_star.grad), atol=1e-6)
    for _ in range(3):  # any perturbation costs more
        noisy = u_star.detach() + 0.3 * torch.randn(5, 6, generator=g)
        assert losses.lelp(noisy, p, tau).item() > best.item()


LOSS = {"hard": losses.hard, "kd": losses.kd, "lelp": losses.lelp}


@pytest.mark.parametrize("n_classes", [2, 6])
@pytest.mark.parametrize("name", ["hard", "kd", "lelp"])
def test_shapes_and_gradients(n_classes: int, name: str) -> None:
    g = torch.Generator().manual_seed(1)
    S, B = 3, 4
    y = torch.randint(0, n_classes, (B,), generator=g)
    if name == "lelp":
        u = torch.randn(B, n_classes * S, generator=g, requires_grad=True)
        targets = torch.softmax(torch.randn(B, n_classes * S, generator=g), -1)
        loss = LOSS[name](u, targets, 2.0)
        cls = losses.class_log_probs(u, [S] * n_classes, 2.0)
        assert cls.shape == (B, n_classes)
        loss = losses.with_hard(loss, cls, y, 0.5)
    else:
        u = torch.randn(B, n_classes, generator=g, requires_grad=True)
        other = y if name == "hard" else torch.randn(B, n_classes, generator=g)
        args = (other,) if name == "hard" else (other, 2.0)
        loss = LOSS[name](u, *args)
    assert loss.dim() == 0
    assert torch.isfinite(loss)
    loss.backward()
    assert u.grad is not None
    assert torch.isfinite(u.grad).all()
    assert u.grad.abs().sum() > 0


def test_class_log_probs_golden_and_normalised() -> None:
    # softmax([0, 0, ln2, ln4]) = [1/8, 1/8, 1/4, 1/2] -> P(c0) = 1/4, P(c1) = 3/4
    u = torch.tensor([[0.0, 0.0, LN2, LN4]])
    got = losses.class_log_probs(u, [2, 2], 1.0)
    assert torch.allclose(got.exp(), torch.tensor([[0.25, 0.75]]), atol=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("sizes", [[2, 2], [1, 3, 2], [4, 4, 4, 4, 4, 4]])
def test_class_log_probs_is_sum_of_subclass_probs(sizes: list[int], tau: float) -> None:
    u = torch.randn(7, sum(sizes), generator=torch.Generator().manual_seed(2)) * 3
    got = losses.class_log_probs(u, sizes, tau).exp()
    q = torch.softmax(u / tau, -1)
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    hand = torch.stack(
        [q[:, a:b].sum(-1) for a, b in zip(offsets[:-1], offsets[1:], strict=True)], -1
    )
    assert torch.allclose(got, hand, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(7), atol=1e-6)


def test_class_log_probs_tau_pitfall() -> None:
    # Class 0 has one subclass (logit 2), class 1 two (logits 0, 0). With tau = 4:
    # P(c0) ∝ e^0.5 = 1.6487, P(c1) ∝ 2 e^0 = 2 -> class 1 (P = 2 / 3.6487 = 0.54814).
    # logsumexp of the RAW logits gives 2 vs ln 2 -> class 0: the wrong answer.
    u = torch.tensor([[2.0, 0.0, 0.0]])
    right = losses.class_log_probs(u, [1, 2], tau=4.0)
    naive = torch.stack([u[:, :1].logsumexp(-1), u[:, 1:].logsumexp(-1)], -1)
    assert right.argmax(-1).item() == 1
    assert naive.argmax(-1).item() == 0
    assert right.exp()[0, 1].item() == pytest.approx(0.5481372, abs=1e-6)


def test_class_log_probs_width_mismatch() -> None:
    with pytest.raises(ValueError, match="sum to 5"):
        losses.class_log_probs(torch.zeros(1, 4), [2, 3], 1.0)


def test_with_hard_golden() -> None:
    base = torch.tensor(1.0)
    cls = torch.tensor([[0.0, LN3]])  # CE(y=0) = ln 4
    assert losses.with_hard(base, cls, torch.tensor([0]), 0.5).item() == pytest.approx(
        1 + 0.5 * LN4, abs=1e-6
    )
    assert losses.with_hard(base, cls, torch.tensor([0]), 0.0) is base


def test_with_hard_accepts_log_probs() -> None:
    # CE of normalised log-probs equals CE of the logits they came from.
    logits = torch.tensor([[0.2, -1.0, 3.0]])
    y = torch.tensor([2])
    a = losses.with_hard(torch.tensor(0.0), logits, y, 1.0)
    b = losses.with_hard(torch.tensor(0.0), torch.log_softmax(logits, -1), y, 1.0)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


# ---- the other seed methods' losses (core/objectives uses them) ----

GEN = torch.Generator().manual_seed(7)


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


def test_embedding_mse_golden_and_normalize() -> None:
    # (1 - 0)^2 and (0 - 2)^2 over 2 entries: (1 + 4) / 2
    got = losses.embedding_mse(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
    assert got.item() == pytest.approx(2.5)
    # normalised: [1, 0] vs [0, 1] -> (1 + 1) / 2; a scaled copy gives 0
    assert losses.embedding_mse(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), normalize=True
    ).item() == pytest.approx(1.0)
    x = _rand(4, 3)
    assert losses.embedding_mse(3 * x, x, normalize=True).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="map the student embedding"):
        losses.embedding_mse(torch.zeros(2, 3), torch.zeros(2, 4))


def test_embedding_mse_normalize_factor_is_two_one_minus_cos_over_d() -> None:
    # d = 4. Row 1: cos([1,0,0,0], [1,1,0,0]) = 1/sqrt 2, 2 (1 - 1/sqrt 2) / 4 = 0.1464466;
    # row 2: cos([3,0,0,0], [-1,0,0,0]) = -1, 2 * 2 / 4 = 1. Batch mean: 0.5732233.
    pred = torch.tensor([[1.0, 0, 0, 0], [3.0, 0, 0, 0]])
    target = torch.tensor([[1.0, 1, 0, 0], [-1.0, 0, 0, 0]])
    got = losses.embedding_mse(pred, target, normalize=True).item()
    assert got == pytest.approx((2 * (1 - 1 / math.sqrt(2)) / 4 + 1.0) / 2, abs=1e-6)
    assert got == pytest.approx(0.5732233, abs=1e-6)
    doc = " ".join((losses.embedding_mse.__doc__ or "").split())
    assert "``2 (1 - cos) / d`` per row" in doc


def test_similarity_kl_golden() -> None:
    # Teacher query along anchor 0 (cos 1, 0), student query along anchor 1 (cos 0, 1), T = 1:
    # p_t = [e, 1] / (e + 1) = [0.7311, 0.2689], p_s reversed, so log(p_t / p_s) = [1, -1]:
    # KL = 0.7311 - 0.2689 = 0.4621172.
    anchors = torch.eye(2)
    got = losses.similarity_kl(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), anchors, anchors, 1.0
    )
    assert got.item() == pytest.approx(0.4621172, abs=1e-5)


def test_similarity_kl_mask_removes_anchors() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q_s, q_t = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[False, False, True]])
    masked = losses.similarity_kl(q_s, q_t, anchors, anchors, 1.0, mask)
    assert masked.item() == pytest.approx(0.4621172, abs=1e-5)  # anchors 0, 1 only


@pytest.mark.parametrize("d", [2, 6])
def test_similarity_kl_zero_when_student_equals_teacher_and_grad_flows(d: int) -> None:
    q, a = _rand(5, d), _rand(9, d)
    assert losses.similarity_kl(q, q, a, a, 0.04).item() == pytest.approx(0.0, abs=1e-5)
    s = _rand(5, d).requires_grad_(True)
    loss = losses.similarity_kl(s, q, a, a, 0.04)
    loss.backward()
    assert loss.item() > 0 and s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("d", [2, 6])
def test_relational_kl_zero_when_equal_positive_otherwise(d: int) -> None:
    t = _rand(6, d)
    assert losses.relational_kl(2 * t, t, 0.1).item() == pytest.approx(0.0, abs=1e-5)
    s = _rand(6, d).requires_grad_(True)
    loss = losses.relational_kl(s, t, 0.1)
    loss.backward()
    assert loss.item() > 0 and s.grad.abs().sum() > 0


def test_relational_kl_golden() -> None:
    # keys e0, e1; teacher rows: [1, 0] / [0, 1] at T = 1 -> p_t row 0 = [e, 1]/(e + 1).
    # Student row 0 = e1 -> p_s row 0 = [1, e]/(e + 1), row 1 = e1 = teacher's (KL 0).
    # KL row 0 = 0.4621172 (as in the CompRess golden); batch mean = 0.2310586.
    t = torch.eye(2)
    s = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert losses.relational_kl(s, t, 1.0).item() == pytest.approx(0.2310586, abs=1e-5)


def test_supcon_golden() -> None:
    # z = e0, e0, e1 with labels 0, 0, 1, T = 1. Anchor 0: positive 1, others {1, 2}:
    # -log(e / (e + 1)) = log(e + 1) - 1; anchor 1 the same; anchor 2 has no positive (skipped).
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = losses.supcon(z, torch.tensor([0, 0, 1]), 1.0)
    assert got.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-5)
    # no positives anywhere -> 0, still differentiable
    zz = _rand(3, 4).requires_grad_(True)
    none = losses.supcon(zz, torch.tensor([0, 1, 2]))
    none.backward()
    assert none.item() == 0.0


def test_supcon_prefers_label_clusters() -> None:
    y = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    mixed = clustered[[0, 2, 1, 3]]
    assert losses.supcon(clustered, y) < losses.supcon(mixed, y)


def test_subclass_aux_hand_computation() -> None:
    # Rows [1, -1] standardise to [1, -1] (population var 1), scaled by 1/sqrt(T * CS) =
    # 1/sqrt(2): z_i . z_i = 1 = 1/T. Equal rows: logsumexp([1, 1]) - 1 - ln 2 = 0.
    same = torch.tensor([[1.0, -1.0], [3.0, -3.0]])  # standardisation removes the scale
    assert losses.subclass_aux(same).item() == pytest.approx(0.0, abs=1e-5)
    # Opposite rows: z_0 . z_1 = -1 -> log(e + 1/e) - 1 - ln 2 = -0.5662192
    opp = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    expected = math.log(math.e + 1 / math.e) - 1 - LN2
    assert losses.subclass_aux(opp).item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(-0.5662192, abs=1e-6)


def test_subclass_aux_temperature_and_gradient() -> None:
    # T = 2: z_i . z_j = +-1/2; equal rows still give 0.
    assert losses.subclass_aux(torch.tensor([[1.0, -1.0]] * 3), 2.0).item() == pytest.approx(
        0.0, abs=1e-5
    )
    u = _rand(8, 12).requires_grad_(True)
    losses.subclass_aux(u).backward()
    assert u.grad.abs().sum() > 0


@pytest.mark.parametrize("C", [2, 6])
def test_subclass_log_probs_matches_class_log_probs(C: int) -> None:
    u = _rand(5, C * 3)
    got = losses.subclass_log_probs(u, 3)
    assert got.shape == (5, C)
    assert torch.allclose(got, losses.class_log_probs(u, [3] * C, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="not a multiple"):
        losses.subclass_log_probs(_rand(2, 7), 3)


@pytest.mark.parametrize("C", [2, 6])
def test_subclass_distill_equal_logits_give_entropy_and_zero_soft_gradient(C: int) -> None:
    tau, alpha, S = 4.0, 0.5, 2
    t = _rand(4, C * S)
    y = torch.randint(0, C, (4,), generator=GEN)
    s = t.clone().requires_grad_(True)
    loss = losses.subclass_distill(s, t, y, S, tau, alpha)
    p = torch.softmax(t / tau, -1)
    entropy = -(p * p.log()).sum(-1).mean()
    hard_term = torch.nn.functional.nll_loss(losses.subclass_log_probs(t, S), y)
    assert loss.item() == pytest.approx(
        (alpha * tau**2 * entropy + (1 - alpha) * hard_term).item(), abs=1e-5
    )
    # alpha = 1: only the soft term, whose gradient vanishes at s = t
    s1 = t.clone().requires_grad_(True)
    losses.subclass_distill(s1, t, y, S, tau, 1.0).backward()
    assert torch.allclose(s1.grad, torch.zeros_like(s1.grad), atol=1e-6)


def test_schedules() -> None:
    assert [losses.linear_schedule(p, 4.0, 1.0) for p in (0, 0.5, 1, 2)] == [4.0, 2.5, 1.0, 1.0]
    assert losses.cosine_budget(0.0, 0.3) == pytest.approx(0.3)
    assert losses.cosine_budget(0.5, 0.3) == pytest.approx(0.15)
    assert losses.cosine_budget(1.0, 0.3) == pytest.approx(0.0, abs=1e-12)


def test_top_k_mask_and_scaffold() -> None:
    t = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    y = torch.tensor([1, 3])
    mask = losses.top_k_mask(t, y, 2)
    assert mask.tolist() == [[True, True, True, False], [False, False, True, True]]
    s = _rand(2, 4)
    assert torch.equal(losses.scaffold_logits(s, torch.zeros(2), mask, 4.0), s)
    boosted = losses.scaffold_logits(s, torch.tensor([0.5, 1.0]), mask, 4.0)
    assert torch.allclose(boosted - s, torch.tensor([[2.0, 2, 2, 0], [0, 0, 4, 4]]))


def test_scaffold_binary_wrong_teacher_changes_nothing() -> None:
    # K = 1, C = 2: when the teacher is wrong both classes are boosted equally, so the
    # scaffolded probabilities equal the student's.
    t, y, s = torch.tensor([[2.0, 0.0]]), torch.tensor([1]), torch.tensor([[0.3, -0.2]])
    mask = losses.top_k_mask(t, y, 1)
    boosted = losses.scaffold_logits(s, torch.ones(1), mask, 4.0)
    assert torch.allclose(boosted.softmax(-1), s.softmax(-1), atol=1e-6)


@pytest.mark.parametrize("C", [2, 6])
def test_retrieval_mix(C: int) -> None:
    log_s = torch.log_softmax(_rand(3, C), -1)
    nb = torch.softmax(_rand(3, 4, C), -1)
    sims = _rand(3, 4)
    assert torch.allclose(losses.retrieval_mix(log_s, nb, sims, 0.0, 0.1), log_s, atol=1e-5)
    mixed = losses.retrieval_mix(log_s, nb, sims, 0.3, 0.1).exp()
    w = torch.softmax(sims / 0.1, -1)
    hand = 0.3 * (w.unsqueeze(-1) * nb).sum(1) + 0.7 * log_s.exp()
    assert torch.allclose(mixed, hand, atol=1e-6)
    assert torch.allclose(mixed.sum(-1), torch.ones(3), atol=1e-5)


# ---- AMAD attention-map alignment ----


def _maps(*rows: list[list[float]]) -> torch.Tensor:
    """(1, H, L, L) from H square maps."""
    return torch.tensor([list(rows)], dtype=torch.float32)


EYE = [[1.0, 0.0], [0.0, 1.0]]
FLAT = [[0.5, 0.5], [0.5, 0.5]]


def test_attention_alignment_l2_golden() -> None:
    """One student head: a_i1 = 1, so the loss is sum_i |t_i/|t_i| - s/|s||^2. With s = t_1
    that is |t_2^ - t_1^|^2 = 2 - 2 cos(t_1, t_2) = 2 - 2/sqrt(2)."""
    got = losses.attention_alignment(_maps(EYE, FLAT), _maps(EYE), torch.ones(1, 2), "l2")
    assert float(got) == pytest.approx(2 - math.sqrt(2), rel=1e-6)


def test_attention_alignment_kl_golden() -> None:
    """KL per attention row, mean over rows, sum over teacher heads:
    KL(eye || s) = log(4/3); KL(flat || s) = 0.5 log(2/3) + 0.5 log 2."""
    s = [[0.75, 0.25], [0.25, 0.75]]
    got = losses.attention_alignment(_maps(EYE, FLAT), _maps(s), torch.ones(1, 2), "kl")
    want = math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2)
    assert float(got) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("variant", ["kl", "l2"])
def test_attention_alignment_zero_when_every_head_draws_the_same_map(variant: str) -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.softmax(torch.randn(3, 1, 5, 5, generator=g), dim=-1)
    t, s = m.expand(3, 6, 5, 5), m.expand(3, 2, 5, 5)  # 6 teacher heads, 2 student heads
    got = losses.attention_alignment(t, s, torch.ones(3, 5), variant)
    assert float(got) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("variant", ["kl", "l2"])
def test_attention_alignment_ignores_padding_and_grad_flows(variant: str) -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.softmax(torch.randn(2, 4, 3, 3, generator=g), dim=-1)
    logits = torch.randn(2, 2, 3, 3, generator=g, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    base = losses.attention_alignment(t, torch.softmax(logits, -1), mask, variant)
    base.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # Anything in the first example's padded row and column changes nothing.
    t2, s2 = t.clone(), torch.softmax(logits.detach(), -1).clone()
    t2[0, :, 2, :] = t2[0, :, :, 2] = 0.77
    s2[0, :, 2, :] = s2[0, :, :, 2] = 0.11
    again = losses.attention_alignment(t2, s2, mask, variant)
    assert float(again) == pytest.approx(base.item(), rel=1e-6)


def test_attention_alignment_names_bad_arguments() -> None:
    with pytest.raises(ValueError, match="variant must be 'kl' or 'l2'"):
        losses.attention_alignment(_maps(EYE), _maps(EYE), torch.ones(1, 2), "cos")
    with pytest.raises(ValueError, match=r"must share batch and \(L, L\)"):
        losses.attention_alignment(_maps(EYE), torch.ones(1, 1, 3, 3), torch.ones(1, 2))
