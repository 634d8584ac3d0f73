"""Golden values and invariants for core/losses.py (numbers computed by hand in comments)."""

from __future__ import annotations

import math

import pytest
import torch

from core import losses

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


@pytest.mark.parametrize("n_classes", [2, 6])
@pytest.mark.parametrize("name", ["hard", "kd", "lelp"])
def test_shapes_and_gradients(n_classes: int, name: str) -> None:
    g = torch.Generator().manual_seed(1)
    S, B = 3, 4
    y = torch.randint(0, n_classes, (B,), generator=g)
    if name == "lelp":
        u = torch.randn(B, n_classes * S, generator=g, requires_grad=True)
        targets = torch.softmax(torch.randn(B, n_classes * S, generator=g), -1)
        loss = losses.get_loss(name)(u, targets, 2.0)
        cls = losses.class_log_probs(u, [S] * n_classes, 2.0)
        assert cls.shape == (B, n_classes)
        loss = losses.with_hard(loss, cls, y, 0.5)
    else:
        u = torch.randn(B, n_classes, generator=g, requires_grad=True)
        other = y if name == "hard" else torch.randn(B, n_classes, generator=g)
        args = (other,) if name == "hard" else (other, 2.0)
        loss = losses.get_loss(name)(u, *args)
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


def test_registry() -> None:
    assert set(losses.LOSSES) == {"hard", "kd", "lelp"}
    assert losses.get_loss("kd") is losses.kd


def test_get_loss_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'kl'; valid names are: hard, kd, lelp"):
        losses.get_loss("kl")
