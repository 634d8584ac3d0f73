"""core/objectives: each seed method's state and hooks on tiny synthetic teachers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lelp_studio import objectives as Mth
from lelp_studio import replay
from lelp_studio.config import ConfigError, load_config
from lelp_studio.predict import class_logits_timed
from lelp_studio.students import MLPStudent


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """These models are tiny: on a shared 2-core machine intra-op threads only contend (a
    400-step digits MLP took 7 s with 2 threads and 0.2 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spec(objective: str, *extra: str) -> Any:
    return load_config(None, [f"train.objective={objective}", *extra]).train


def _make(spec: Any) -> Any:
    return Mth.make(spec.objective, spec)


def _fit(m: Any, td: Any, emb_dim: int) -> Any:
    """``setup`` on the teacher, then ``attach`` to a fresh MLP student of width ``emb_dim``."""
    m.setup(td)
    m.attach(MLPStudent(td.H.shape[1], emb_dim, m.n_outputs(td.n_classes)))
    return m


def _loss(m: Any, out: Any, emb: Any, idx: Any, y: Any, progress: float) -> Any:
    return m.loss(out, Mth.Batch(idx, y, emb, progress))


def _after(m: Any, out: Any, emb: Any, idx: Any, y: Any, progress: float) -> None:
    m.after_step(out, Mth.Batch(idx, y, emb, progress))


def _teacher(n: int = 60, d: int = 8, C: int = 2, seed: int = 0) -> Mth.TeacherData:
    """Linearly separable clusters: H has the class in its first C dims, Z = H[:, :C] * 3."""
    r = np.random.default_rng(seed)
    y = np.arange(n) % C
    H = r.normal(size=(n, d)).astype(np.float32) * 0.3
    H[np.arange(n), y] += 2.0
    Z = (H[:, :C] * 3).astype(np.float32)
    return Mth.TeacherData(H=H, Z=Z, y=y, H_eval=H[:20], Z_eval=Z[:20], y_eval=y[:20])


def test_every_method_is_configurable_and_documented() -> None:
    for name in set(Mth.names()) - {"hard", "kd", "lelp"}:
        doc = Mth.doc(name)
        assert len(doc) > 200 and any(str(y) in doc for y in range(2015, 2025)), name
    assert isinstance(_make(_spec("disk")), Mth.DiSK)
    with pytest.raises(ConfigError, match="choose one of: amad, compress, disk, dwt"):
        Mth.make("kl")


@pytest.mark.parametrize(
    "override, where",
    [("train.compress.queue_size=0", "queue_size"), ("train.reaugkd.lam=1.5", "lam")],
)
def test_method_parameters_are_validated(override: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        load_config(None, [override])


# ---- the FIFO queue ----


def test_queue_is_fifo_and_wraps() -> None:
    q = Mth.EmbeddingQueue(4, 1)
    assert len(q) == 0 and q.items().shape == (0, 1)
    q.push(torch.tensor([[1.0], [2.0], [3.0]]))
    assert q.items().ravel().tolist() == [1, 2, 3]
    q.push(torch.tensor([[4.0], [5.0]]))  # full: 1 is dropped first
    assert q.items().ravel().tolist() == [2, 3, 4, 5]
    q.push(torch.tensor([[6.0]]))
    assert q.items().ravel().tolist() == [3, 4, 5, 6] and len(q) == 4
    q.push(torch.arange(10.0, 16.0).view(-1, 1))  # larger than the queue: keeps the last 4
    assert q.items().ravel().tolist() == [12, 13, 14, 15]


def test_queue_push_detaches() -> None:
    q = Mth.EmbeddingQueue(2, 2)
    x = torch.ones(1, 2, requires_grad=True)
    q.push(x * 2)
    assert not q.items().requires_grad


# ---- FitNet, SEA, CompRess ----


@pytest.mark.parametrize("C", [2, 6])
@pytest.mark.parametrize("objective", ["fitnet", "sea", "compress"])
def test_embedding_methods_loss_and_gradients(objective: str, C: int) -> None:
    td = _teacher(n=60, d=8, C=C)
    m = _fit(_make(_spec(objective, "train.sea.sample_size=40")), td, 4)
    emb = torch.randn(10, 4, requires_grad=True)
    out = torch.randn(10, C, requires_grad=True)
    idx = torch.arange(10)
    loss = _loss(m, out, emb, idx, torch.as_tensor(td.y[:10]), 0.0)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert emb.grad.abs().sum() > 0 and out.grad.abs().sum() > 0
    for mod in m.extra_modules():
        assert all(p.grad is not None for p in mod.parameters())


def test_head_needs_a_class_signal() -> None:
    with pytest.raises(ValueError, match=r"train.alpha > 0 \(hard labels\)"):
        _fit(_make(_spec("fitnet", "train.fitnet.kd_weight=0")), _teacher(), 4)
    m = _make(_spec("fitnet", "train.fitnet.kd_weight=0", "train.alpha=1"))
    assert _fit(m, _teacher(), 4) is m


def test_fitnet_hint_is_zero_when_the_map_reproduces_the_teacher() -> None:
    td = _teacher(d=4)
    m = _fit(_make(_spec("fitnet", "train.fitnet.kd_weight=0", "train.alpha=1")), td, 4)
    with torch.no_grad():
        m.map.weight.copy_(torch.eye(4))
        m.map.bias.zero_()
    idx = torch.arange(6)
    emb = torch.as_tensor(td.H[:6])
    out = torch.tensor([[50.0, -50.0] if c == 0 else [-50.0, 50.0] for c in td.y[:6]])
    assert _loss(m, out, emb, idx, torch.as_tensor(td.y[:6]), 0.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


@pytest.mark.parametrize("how", ["random", "diverse"])
def test_sample_rows_size_unique_and_seeded(how: str) -> None:
    H = np.random.default_rng(0).normal(size=(50, 3))
    a = Mth.sample_rows(H, 10, how, 0)
    assert len(a) == 10 == len(np.unique(a)) and a.max() < 50
    assert np.array_equal(a, Mth.sample_rows(H, 10, how, 0))


def test_diverse_sampling_covers_every_cluster() -> None:
    # 3 tight, far-apart clusters of very different sizes: k-means++ seeding picks one row
    # of each, random sampling of 3 rows almost always misses the small ones.
    r = np.random.default_rng(0)
    sizes, centres = [200, 5, 5], np.array([[0, 0], [100, 0], [0, 100]])
    H = np.concatenate(
        [c + r.normal(size=(s, 2)) * 0.01 for c, s in zip(centres, sizes, strict=True)]
    )
    cluster = np.repeat([0, 1, 2], sizes)
    assert set(cluster[Mth.sample_rows(H, 3, "diverse", 0)]) == {0, 1, 2}


def test_sea_targets_are_pca_of_the_teacher() -> None:
    td = _teacher(n=80, d=8)
    m = _fit(_make(_spec("sea", "train.sea.sample_size=80")), td, 3)
    t = m.target.numpy()
    assert t.shape == (80, 3)
    assert np.sqrt(np.mean(t**2)) == pytest.approx(1.0, rel=1e-4)  # RMS-normalised
    cov = np.cov(t.T)
    assert abs(cov[0, 1]) < 1e-4 and cov[0, 0] >= cov[1, 1] >= cov[2, 2]  # decorrelated, sorted
    assert 0 < m.info()["sea_explained_variance"] <= 1
    with pytest.raises(ValueError, match="lower student.hidden"):
        _fit(_make(_spec("sea")), td, 16)


@pytest.mark.parametrize("queues", ["two", "one"])
def test_compress_pushes_after_each_step_and_uses_the_queue(queues: str) -> None:
    td = _teacher(n=30, d=6)
    spec = _spec("compress", f"train.compress.queues={queues}")
    m = _fit(_make(spec), td, 6)
    assert m.info()["compress_queue_size"] == 30  # min(128000, n)
    y = torch.as_tensor(td.y)
    emb, out = torch.randn(8, 6), torch.randn(8, 2)
    first = _loss(m, out, emb, torch.arange(8), y[:8], 0.0)  # empty queue: in-batch anchors
    assert torch.isfinite(first)
    _after(m, out, emb, torch.arange(8), y[:8], 0.0)
    assert len(m.queue_t) == 8
    assert torch.allclose(m.queue_t.items(), m.t_emb[:8])
    if queues == "two":
        assert len(m.queue_s) == 8
        assert torch.allclose(m.queue_s.items(), torch.nn.functional.normalize(emb, dim=-1))


def test_compress_two_queue_zero_when_student_embeds_like_the_teacher() -> None:
    td = _teacher(n=30, d=6)
    m = _make(_spec("compress", "train.compress.kd_weight=0", "train.alpha=1"))
    _fit(m, td, 6)
    H = torch.as_tensor(td.H)
    idx = torch.arange(10)
    _after(m, None, H[idx], idx, torch.as_tensor(td.y[:10]), 0.0)  # both queues = teacher
    q = torch.arange(10, 20)
    # hard term only remains: make it ~0 with confident correct logits
    out = torch.nn.functional.one_hot(torch.as_tensor(td.y[10:20]), 2).float() * 100
    loss = _loss(m, out, H[q], q, torch.as_tensor(td.y[10:20]), 0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


# ---- ReAugKD ----


def _reaug(k: int = 3, lam: float = 0.5) -> Mth.ReAugKD:
    td = _teacher(n=60, d=8)
    spec = _spec(
        "reaugkd", f"train.reaugkd.k={k}", f"train.reaugkd.lam={lam}", "train.reaugkd.proj_epochs=3"
    )
    m = _fit(_make(spec), td, 4)
    assert isinstance(m, Mth.ReAugKD)
    return m


def test_reaugkd_retrieves_the_true_nearest_neighbours() -> None:
    m = _reaug(k=5)
    emb = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    ind, sims = m.neighbours(emb)
    with torch.no_grad():
        q = torch.nn.functional.normalize(m.query(emb), dim=-1)
    brute = (q @ m.keys.T).numpy()  # cosine to every knowledge-base key
    expect = np.argsort(-brute, axis=1)[:, :5]
    assert np.array_equal(ind, expect)
    assert np.allclose(sims, np.take_along_axis(brute, expect, 1), atol=1e-5)


def test_reaugkd_lambda_zero_reproduces_the_student_and_one_the_knowledge_base() -> None:
    emb = torch.randn(5, 4)
    log_s = torch.log_softmax(torch.randn(5, 2), -1)
    assert torch.allclose(_reaug(lam=0.0).augment(log_s, emb), log_s, atol=1e-5)
    m = _reaug(k=1, lam=1.0)
    ind, _ = m.neighbours(emb)
    # k = 1, lambda = 1: the prediction is the nearest entry's teacher soft label
    assert torch.allclose(m.augment(log_s, emb).exp(), m.kb_probs[ind[:, 0]], atol=1e-5)
    assert m.info()["reaugkd_retrieval_s"] > 0


def test_reaugkd_projection_separates_classes_and_loss_has_gradients() -> None:
    m = _reaug()
    keys, y = m.keys, torch.as_tensor(_teacher().y)
    same = (keys[y == 0] @ keys[y == 0].T).mean()
    cross = (keys[y == 0] @ keys[y == 1].T).mean()
    assert same > cross  # supervised contrastive training pulled classes apart
    emb = torch.randn(6, 4, requires_grad=True)
    loss = _loss(m, torch.randn(6, 2), emb, torch.arange(6), y[:6], 0.0)
    loss.backward()
    assert emb.grad.abs().sum() > 0 and not m.proj.weight.requires_grad


def test_reaugkd_state_round_trips_through_safetensors(tmp_path: Any) -> None:
    from lelp_studio import replay

    m, td = _reaug(k=4), _teacher(n=60, d=8)
    path = replay.save_method_state(tmp_path, m)
    assert path == tmp_path / "method.safetensors" and not list(tmp_path.glob("*.tmp"))
    state = replay.load_method_state(path)
    assert sorted(state) == sorted(Mth.ReAugKD.STATE_KEYS)
    assert torch.equal(state["proj.weight"], m.proj.weight.detach())
    m2 = (
        type(m)(m.params, tau=m.tau, alpha=m.alpha, seed=m.seed)
        .load_state_tensors(state)
        .build_knowledge_base(td.H, td.Z)
    )
    assert torch.equal(m2.keys, m.keys) and torch.equal(m2.kb_probs, m.kb_probs)
    emb = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    (i1, s1), (i2, s2) = m.neighbours(emb), m2.neighbours(emb)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    log_s = torch.log_softmax(torch.randn(6, 2), -1)
    assert torch.allclose(m.augment(log_s, emb), m2.augment(log_s, emb))


@pytest.mark.parametrize(
    "state, match",
    [
        ({"proj.weight": torch.zeros(4, 8)}, "missing"),
        (
            {
                "proj.weight": torch.zeros(4, 8),
                "query.weight": torch.zeros(3, 3),
                "query.bias": torch.zeros(3),
            },
            "inconsistent",
        ),
    ],
)
def test_reaugkd_rejects_a_bad_state(state: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _make(_spec("reaugkd")).load_state_tensors(state)


def test_methods_without_learned_state_save_nothing(tmp_path: Any) -> None:

    m = _fit(_make(_spec("dwt")), _teacher(), 4)
    assert m.state_tensors() == {}
    assert replay.save_method_state(tmp_path, m) is None and not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="another method"):
        m.load_state_tensors({"proj.weight": torch.zeros(1)})


# ---- Subclass Distillation ----


@pytest.mark.parametrize("C", [2, 6])
def test_subclass_distill_retrains_a_teacher_head(C: int) -> None:
    td = _teacher(n=120, d=8, C=C)
    spec = _spec(
        "subclass-distill",
        "train.subclass_distill.n_subclasses=3",
        "train.subclass_distill.head_epochs=30",
    )
    m = _fit(_make(spec), td, 4)
    assert m.n_outputs(C) == 3 * C and m.t_sub.shape == (120, 3 * C)
    info = m.info()
    assert info["subclass_teacher_accuracy"] > 90 and info["subclass_teacher_train_accuracy"] > 90
    assert 0 < info["subclass_teacher_assignment_entropy"] <= np.log(3) + 1e-6
    out = torch.randn(5, 3 * C, requires_grad=True)
    loss = _loss(m, out, None, torch.arange(5), torch.as_tensor(td.y[:5]), 0.0)
    loss.backward()
    assert out.grad.abs().sum() > 0
    assert m.class_logits(out).shape == (5, C)


def test_subclass_aux_loss_spreads_the_subclasses() -> None:
    td = _teacher(n=120, d=8)
    with_aux = _fit(_make(_spec("subclass-distill")), td, 4).info()
    without = _make(_spec("subclass-distill", "train.subclass_distill.aux_weight=0"))
    ent0 = _fit(without, td, 4).info()["subclass_teacher_assignment_entropy"]
    assert with_aux["subclass_teacher_assignment_entropy"] > ent0


# ---- DWT ----


@pytest.mark.parametrize(
    "schedule, expected", [("linear", [4.0, 2.5, 1.0]), ("constant", [4.0, 4.0, 4.0])]
)
def test_dwt_soft_weight_schedule(schedule: str, expected: list[float]) -> None:
    m = _fit(_make(_spec("dwt", f"train.dwt.schedule={schedule}")), _teacher(), 4)
    assert [m.soft_weight(p) for p in (0.0, 0.5, 1.0)] == expected


def test_dwt_loss_weights_hard_and_soft_terms() -> None:
    from lelp_studio import losses

    td = _teacher()
    m = _fit(_make(_spec("dwt", "train.tau=2")), td, 4)
    out, idx, y = torch.randn(6, 2), torch.arange(6), torch.as_tensor(td.y[:6])
    hard, soft = losses.hard(out, y), losses.kd(out, torch.as_tensor(td.Z[:6]), 2.0)
    assert _loss(m, out, None, idx, y, 0.5).item() == pytest.approx((hard + 2.5 * soft).item())


def test_remap_copies_teacher_layers_and_reuses_the_last() -> None:
    torch.manual_seed(0)
    teacher = [(torch.randn(3, 5), torch.randn(3)), (torch.randn(3, 3), torch.randn(3))]
    head = (torch.randn(2, 3), torch.randn(2))
    student = MLPStudent(in_dim=5, hidden=4, n_out=2, layers=3)
    Mth.remap_mlp(student, [*teacher, head])
    lin = [m for m in student.trunk if isinstance(m, nn.Linear)]
    assert torch.equal(lin[0].weight[:3, :5], teacher[0][0])
    assert torch.equal(lin[1].weight[:3, :3], teacher[1][0])
    assert torch.equal(lin[2].weight[:3, :3], teacher[1][0])  # last teacher layer reused
    assert torch.equal(lin[2].bias[:3], teacher[1][1])
    assert torch.equal(student.head.weight[:, :3], head[0])
    with pytest.raises(ValueError, match="at least as wide"):
        Mth.remap_mlp(MLPStudent(5, 2, 2, layers=2), [*teacher, head])


def test_dwt_remap_needs_teacher_layers() -> None:
    m = _make(_spec("dwt", "train.dwt.remap=true")).setup(_teacher())
    with pytest.raises(ValueError, match="set_teacher_layers"):
        m.attach(MLPStudent(8, 4, 2))


# ---- DiSK ----


def test_disk_top_k_defaults() -> None:
    assert _fit(_make(_spec("disk")), _teacher(C=2), 4).k_ == 1
    assert _fit(_make(_spec("disk")), _teacher(C=6), 4).k_ == 2
    assert _fit(_make(_spec("disk", "train.disk.top_k=3")), _teacher(C=6), 4).k_ == 3


@pytest.mark.parametrize("C", [2, 6])
def test_disk_student_loss_is_plain_kd_when_the_gate_is_closed(C: int) -> None:
    from lelp_studio import losses

    td = _teacher(C=C)
    m = _fit(_make(_spec("disk", "train.tau=2")), td, 4)
    with torch.no_grad():
        m.gate[-1].bias.fill_(-50.0)  # g(x) = sigmoid(-50) ~ 0
        m.gate[-1].weight.zero_()
    out, idx, y = torch.randn(6, C, requires_grad=True), torch.arange(6), torch.as_tensor(td.y[:6])
    loss = _loss(m, out, None, idx, y, 0.0)
    assert loss.item() == pytest.approx(losses.kd(out, m.t_logits[idx], 2.0).item(), abs=1e-5)
    loss.backward()
    assert out.grad.abs().sum() > 0 and m.gate[0].weight.grad is None  # gate frozen here


def test_disk_dual_rises_over_budget_and_gate_closes() -> None:
    td = _teacher(C=6)
    m = _make(_spec("disk", "train.disk.budget=0.0", "train.disk.gate_lr=0.05"))
    _fit(m, td, 4)
    y, idx = torch.as_tensor(td.y), torch.arange(60)
    out = torch.zeros(60, 6)  # a student that fits nothing: the gate would like to help
    with torch.no_grad():
        g0 = m._g(m.t_logits, out).mean().item()
    for _ in range(40):
        _after(m, out, None, idx, y, 0.5)
    assert m.info()["disk_dual"] > 0
    assert m.info()["disk_last_mean_gate"] < g0 / 2


DIGITS = ["dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp"]


@pytest.fixture(scope="module")
def digits_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from lelp_studio.store import Workspace

    return Workspace(tmp_path_factory.mktemp("methods_ws"))  # teacher outputs cached once


def test_digits_teacher_rebuild_remaps_into_an_identical_student(digits_ws: Any) -> None:
    # A student of the teacher's own shape, remapped, computes exactly the teacher's logits.
    from lelp_studio import pipeline
    from lelp_studio.config import TeacherSpec

    ds = pipeline.get_dataset(load_config(None, DIGITS).dataset)
    tr = ds.splits["train"]
    out, _, _ = pipeline.get_teacher_outputs(
        digits_ws, ds, TeacherSpec(kind="digits-mlp", hidden=16)
    )
    layers = Mth.digits_teacher_layers(tr.features, tr.y, 2, 16, 0, out.H["train"])
    student = MLPStudent(64, 16, 2, layers=2)
    Mth.remap_mlp(student, layers)
    with torch.no_grad():
        z = student({"x": torch.as_tensor(ds.splits["test"].features, dtype=torch.float32)})
    assert np.allclose(z.numpy(), out.Z["test"], atol=1e-4)
    with pytest.raises(ValueError, match="did not reproduce"):
        Mth.digits_teacher_layers(tr.features, tr.y, 2, 16, 0, out.H["train"] + 1.0)


# ---- end to end on digits-bin through lelp_studio.pipeline.run_distill ----


@pytest.mark.parametrize(
    "objective, extra",
    [
        ("fitnet", ["train.tau=4"]),
        ("sea", ["train.sea.sampling=diverse", "train.sea.sample_size=500"]),
        ("compress", ["train.compress.queues=two"]),
        ("compress", ["train.compress.queues=one"]),
        ("reaugkd", ["train.reaugkd.proj_epochs=3"]),
        ("subclass-distill", ["train.subclass_distill.head_epochs=20"]),
        ("disk", ["train.alpha=1"]),
    ],
)
def test_run_distill_each_method_on_digits(
    objective: str, extra: list[str], digits_ws: Any
) -> None:
    from lelp_studio import pipeline

    cfg = load_config(None, [*DIGITS, "train.epochs=5", f"train.objective={objective}", *extra])
    rec = pipeline.run_distill(cfg, digits_ws)
    s, tr = rec["metrics"]["student"], rec["metrics"]["student_train"]
    assert s["accuracy"] > 85 and s["agreement"] > 85 and s["kl"] >= 0
    assert tr["agreement"] > 85 and tr["kl"] >= 0 and tr["accuracy"] > 85  # train fidelity
    assert digits_ws.get_array(rec["artifacts"]["eval_logits"]).shape == (360, 2)
    info = rec["metrics"]["method"]
    assert ("method_state" in rec["artifacts"]) == (objective == "reaugkd")  # only learned maps
    if objective == "reaugkd":
        assert info["reaugkd_retrieval_s"] > 0 and info["retrieval_overhead_pct"] >= 0
    if objective == "subclass-distill":
        assert info["subclass_teacher_accuracy"] > 90


@pytest.mark.parametrize("remap", [False, True])
def test_run_distill_dwt_larger_student(remap: bool, digits_ws: Any) -> None:
    from lelp_studio import pipeline

    cfg = load_config(
        None,
        [
            *DIGITS,
            "teacher.hidden=16",
            "student.hidden=128",
            "student.layers=3",
            "train.epochs=5",
            "train.objective=dwt",
            f"train.dwt.remap={str(remap).lower()}",
        ],
    )
    rec = pipeline.run_distill(cfg, digits_ws)
    assert rec["metrics"]["student"]["accuracy"] > 85
    assert rec["metrics"]["method"]["dwt_remap"] is remap


def test_saved_reaugkd_run_replays_its_own_retrieval(digits_ws: Any) -> None:
    """The reloaded run's neighbours equal a brute-force cosine search with the SAVED P and B,
    and its retrieval-augmented predictions equal the eval logits the run stored."""

    from safetensors.torch import load_file

    from lelp_studio import pipeline
    from lelp_studio.students import encode_inputs

    cfg = load_config(
        None,
        [*DIGITS, "train.epochs=2", "train.objective=reaugkd", "train.reaugkd.proj_epochs=2"],
    )
    rec = pipeline.run_distill(cfg, digits_ws)
    path = digits_ws.artifact_path(rec, "method_state")
    student_dir = digits_ws.artifact_path(rec, "student_dir")
    assert path == student_dir / "method.safetensors" and path.is_file()
    student, method = replay.load_reaugkd(digits_ws, rec)
    rows, k = [0, 5, 17, 300], cfg.train.reaugkd.k
    ind, sims = replay.reaugkd_neighbours(digits_ws, rec, rows, "test", loaded=(student, method))

    raw = load_file(str(path))
    P, B, b = raw["proj.weight"].double(), raw["query.weight"].double(), raw["query.bias"].double()
    out = digits_ws.load_teacher_outputs(rec["artifacts"]["teacher_key"])
    keys = torch.nn.functional.normalize(
        torch.tensor(np.array(out.H["train"])).double() @ P.T, dim=-1
    )
    ds = pipeline.get_dataset(cfg.dataset)
    x = torch.as_tensor(np.asarray(ds.splits["test"].features, dtype=np.float32)[rows])
    with torch.no_grad():
        h = student.embed({"x": x}).double()
    q = torch.nn.functional.normalize(h @ B.T + b, dim=-1)
    cos = (q @ keys.T).numpy()
    expect = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    assert ind.shape == (4, k) and np.array_equal(ind, expect)
    assert np.allclose(sims, np.take_along_axis(cos, expect, 1), atol=1e-5)
    # the replay is the run's own prediction, not an approximation
    lp, _ = class_logits_timed(method, student, encode_inputs(ds.splits["test"]))
    stored = digits_ws.get_array(rec["artifacts"]["eval_logits"])
    assert np.allclose(lp.numpy(), stored, atol=1e-4)


# ---- resume: a method's training state travels with the checkpoint ----


@pytest.mark.parametrize(
    "objective, extra",
    [
        ("fitnet", ()),
        ("sea", ("train.sea.sample_size=40",)),
        ("compress", ("train.compress.queues=two", "train.compress.queue_size=50")),
        ("compress", ("train.compress.queues=one",)),
        ("disk", ()),
    ],
    ids=["fitnet", "sea", "compress-two", "compress-one", "disk"],
)
def test_resumed_method_run_equals_an_uninterrupted_one(
    objective: str, extra: tuple[str, ...], tmp_path: Any
) -> None:
    """Maps, queues, DiSK's gate, its optimiser and dual are restored on resume: stopping
    after epoch 2 and resuming gives the same third epoch as never stopping."""
    from lelp_studio.train import TrainConfig, TrainData, train

    td = _teacher(n=60, d=8, C=2)
    spec = _spec(objective, *extra)
    data = TrainData(
        train_inputs={"x": torch.as_tensor(td.H)},
        y=torch.as_tensor(td.y),
        teacher_logits=torch.as_tensor(td.Z),
    )

    def run(ckpt: str | None = None, resume: bool = False, stop_after: int = 0) -> tuple:
        torch.manual_seed(0)
        student = MLPStudent(8, 4, 2)
        method = _make(spec).setup(td)
        method.attach(student)
        cfg = TrainConfig(
            objective=objective, epochs=3, batch_size=16, device="cpu", seed=0,
            checkpoint_dir=ckpt, resume=resume,
        )  # fmt: skip
        # Stopped like a cancelled job: after the checkpoint of epoch ``stop_after``.
        stop = lambda info: "eval_accuracy" in info and info["epoch"] == stop_after  # noqa: E731
        return train(student, data, cfg, on_step=stop, objective=method), student, method

    straight, s_student, s_method = run()
    ck = str(tmp_path / "ck")
    assert run(ck, stop_after=2)[0].cancelled
    resumed, r_student, r_method = run(ck, resume=True)
    assert resumed.resumed_from_epoch == 2
    assert [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in straight.history], rel=1e-5
    )
    for a, b in zip(r_student.parameters(), s_student.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    r_state, s_state = r_method.state_dict(), s_method.state_dict()
    assert r_state.keys() == s_state.keys() and r_state
    for k in s_state:
        torch.testing.assert_close(r_state[k], s_state[k], msg=k)


def test_resume_into_another_methods_setup_is_refused(tmp_path: Any) -> None:
    """A checkpoint whose method state does not fit (here: another queue size) is named."""
    from lelp_studio.train import TrainConfig, TrainData, train

    td = _teacher(n=60, d=8, C=2)
    data = TrainData(train_inputs={"x": torch.as_tensor(td.H)}, y=torch.as_tensor(td.y),
                     teacher_logits=torch.as_tensor(td.Z))  # fmt: skip
    ck = str(tmp_path / "ck")
    for size, resume in ((50, False), (40, True)):
        method = _make(_spec("compress", f"train.compress.queue_size={size}"))
        cfg = TrainConfig(objective="compress", epochs=1, batch_size=16, device="cpu",
                          checkpoint_dir=ck, resume=resume)  # fmt: skip
        if not resume:
            train(MLPStudent(8, 4, 2), data, cfg, objective=_fit(method, td, 4))
            continue
        with pytest.raises(ValueError, match="does not fit this student and compress method"):
            train(MLPStudent(8, 4, 2), data, cfg, objective=_fit(method, td, 4))


# ---- AMAD: attention maps of a teacher with more heads ----


def _tiny_bert(heads: int, layers: int = 2, hidden: int = 16) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=2 * hidden)  # fmt: skip
    return BertModel(cfg, add_pooling_layer=False)


def _token_inputs(n: int = 12, L: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (n, L), generator=g)
    lengths = torch.randint(2, L + 1, (n,), generator=g)
    mask = (torch.arange(L) < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def _amad(*extra: str, n: int = 12) -> Mth.AMAD:
    td = _teacher(n=n, d=8)
    return _make(_spec("amad", *extra)).setup(td)


def test_amad_caches_the_teachers_maps_of_the_chosen_layer() -> None:
    teacher, inputs = _tiny_bert(heads=4), _token_inputs()
    m = _amad("train.amad.teacher_layer=0")
    m.set_teacher_attention(teacher, inputs, batch_size=5)
    assert m.t_att.shape == (12, 4, 6, 6) and m.t_att.dtype == torch.float16
    with torch.no_grad():
        want = teacher(**inputs, output_attentions=True).attentions[0]
    torch.testing.assert_close(m.t_att.float(), want, atol=1e-3, rtol=1e-3)
    real = inputs["attention_mask"].bool()
    rows = m.t_att.float().sum(-1)  # real query rows are distributions over real keys
    assert torch.allclose(rows.permute(0, 2, 1)[real], torch.ones(1), atol=2e-3)
    assert m.info()["amad_teacher_heads"] == 4


def test_amad_student_loss_uses_its_own_attention_and_trains_it() -> None:
    from lelp_studio.students import TransformerStudent

    teacher, inputs = _tiny_bert(heads=4), _token_inputs()
    m = _amad()
    m.set_teacher_attention(teacher, inputs)
    student = TransformerStudent(50, 2, hidden=8, layers=1, heads=2, max_length=6)
    m.attach(student)
    assert student.bert.encoder.layer[0].attention.self.dropout.p == 0.0
    idx = torch.arange(4)
    batch = {k: v[idx, :5] for k, v in inputs.items()}  # a batch cut narrower than the cache
    emb = student.embed(batch)
    loss = _loss(m, student.head(emb), emb, idx, torch.as_tensor(m.t_logits[idx].argmax(1)), 0.0)
    loss.backward()
    q = student.bert.encoder.layer[0].attention.self.query.weight
    assert torch.isfinite(loss) and q.grad is not None and q.grad.abs().sum() > 0
    assert m.info()["amad_student_heads"] == 2


@pytest.mark.parametrize(
    "extra, call, match",
    [
        ((), "mlp", "needs student.kind 'transformer'"),
        (("train.amad.max_cache_mb=1",), "big", "need 4 MB, over train.amad.max_cache_mb=1"),
        (("train.amad.teacher_layer=5",), "cache", "teacher_layer=5 but the model has 2 layers"),
        (("train.amad.kd_weight=0",), "fit", "nothing trains the student's head"),
    ],
)
def test_amad_bad_setups_are_named(extra: tuple[str, ...], call: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        m = _amad(*extra, n=300 if call == "big" else 12)
        if call == "mlp":
            m.attach(MLPStudent(8, 8, 2))
        elif call in ("cache", "big"):
            L = 40 if call == "big" else 6
            m.set_teacher_attention(_tiny_bert(heads=4), _token_inputs(n=m._n, L=L))


def test_run_distill_amad_on_the_text_demo(workspace: Any) -> None:
    """End to end: MiniLM (12 heads) teaches a 2-head transformer student through
    lelp_studio.pipeline; the alignment term falls over training and the student learns the task."""
    from lelp_studio import pipeline

    cfg = load_config(
        None,
        [
            "dataset.source=text-demo", "dataset.max_train=300", "teacher.kind=minilm",
            "student.kind=transformer", "student.embed_dim=32", "student.heads=2",
            "student.layers=1", "student.max_length=32", "train.epochs=4", "train.lr=3e-3",
            "train.objective=amad", "train.batch_size=32", "train.device=cpu",
        ],
    )  # fmt: skip
    rec = pipeline.run_distill(cfg, workspace)
    info = rec["metrics"]["method"]
    assert info["amad_teacher_heads"] == 12 and info["amad_student_heads"] == 2
    assert info["amad_teacher_layer"] == 5  # -1: MiniLM's last layer
    history = rec["metrics"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert rec["metrics"]["student"]["accuracy"] > 60


@pytest.mark.parametrize("kind", ["hf", "arrays"])
def test_check_run_refuses_a_teacher_without_its_path(kind: str) -> None:
    from lelp_studio.pipeline import check_run

    cfg = load_config(None, ["dataset.source=text-demo", f"teacher.kind={kind}"])
    with pytest.raises(ConfigError, match=f"teacher kind '{kind}' needs teacher.path"):
        check_run(cfg)
    check_run(load_config(None, ["teacher.kind=minilm"]))  # the bundled teacher needs none
