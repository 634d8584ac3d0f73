"""The training loop: learning on digits parity, determinism, cancel, resume, OOM retry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lelp_studio import objectives
from lelp_studio import predict as predict_mod
from lelp_studio import train as train_mod
from lelp_studio.predict import predict
from lelp_studio.students import BagOfEmbeddingsStudent, MLPStudent
from lelp_studio.train import TrainConfig, TrainData, pick_device, train


def class_logits(out: torch.Tensor, name: str, sizes=None, tau: float = 1.0) -> torch.Tensor:
    """The objective's prediction rule for a finished run's outputs."""
    return objectives.make(name, tau=tau).restore(2, sizes).class_logits(out)


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """sklearn digits as a binary task (y % 2) with a quick logistic-regression teacher."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    y = y % 2
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    lr = LogisticRegression(max_iter=500).fit(Xtr, ytr)

    def logits(X_: np.ndarray) -> torch.Tensor:
        d = torch.tensor(lr.decision_function(X_), dtype=torch.float32)
        return torch.stack([-d / 2, d / 2], dim=1)  # softmax of these = LR's probabilities

    return {
        "Xtr": torch.tensor(Xtr),
        "ytr": torch.tensor(ytr),
        "Ztr": logits(Xtr),
        "Xte": torch.tensor(Xte),
        "yte": torch.tensor(yte),
        "Zte": logits(Xte),
    }


def _data(d: dict[str, torch.Tensor], sizes: list[int] | None = None) -> TrainData:
    targets = None
    if sizes is not None:  # random valid subclass targets: rows non-negative, summing to 1
        g = torch.Generator().manual_seed(0)
        targets = torch.softmax(torch.randn(len(d["ytr"]), sum(sizes), generator=g), -1)
    return TrainData(
        train_inputs={"x": d["Xtr"]},
        y=d["ytr"],
        teacher_logits=d["Ztr"],
        targets=targets,
        sizes=sizes,
        eval_inputs={"x": d["Xte"]},
        eval_y=d["yte"],
        eval_teacher_logits=d["Zte"],
    )


def _student(n_out: int = 2, seed: int = 0) -> MLPStudent:
    torch.manual_seed(seed)
    return MLPStudent(64, 64, n_out)


FAST = {"epochs": 3, "batch_size": 32, "device": "cpu", "lr": 3e-3}


@pytest.mark.parametrize(("objective", "tau"), [("hard", 1.0), ("kd", 2.0)])
def test_digits_parity_reaches_85_percent(digits, objective: str, tau: float) -> None:
    res = train(_student(), _data(digits), TrainConfig(objective=objective, tau=tau, **FAST))
    assert res.device == "cpu"
    assert len(res.history) == 3
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    last = res.history[-1]
    assert last["eval_accuracy"] > 0.85
    assert last["eval_agreement"] > 0.85
    assert last["examples_per_s"] > 0 and last["lr"] == pytest.approx(3e-3)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.eval_class_logits.shape == (len(digits["yte"]), 2)
    acc = (res.eval_class_logits.argmax(-1) == digits["yte"]).float().mean().item()
    assert acc == pytest.approx(last["eval_accuracy"])
    assert res.steps == 3 * int(np.ceil(len(digits["ytr"]) / 32))
    assert res.wall_s > 0 and not res.cancelled and res.resumed_from_epoch is None


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_lelp_with_random_targets_runs(digits, alpha: float) -> None:
    sizes = [2, 3]
    student = _student(n_out=objectives.make("lelp").restore(2, sizes).n_outputs(2))
    cfg = TrainConfig(objective="lelp", tau=2.0, alpha=alpha, epochs=1, batch_size=64, device="cpu")
    res = train(student, _data(digits, sizes), cfg)
    assert np.isfinite(res.history[0]["loss"])
    assert res.eval_class_logits.shape == (len(digits["yte"]), 2)
    assert torch.allclose(res.eval_class_logits.exp().sum(-1), torch.ones(len(digits["yte"])))


def test_same_seed_same_history(digits) -> None:
    cfg = TrainConfig(objective="kd", tau=2.0, epochs=2, batch_size=64, device="cpu", seed=3)
    a = train(_student(), _data(digits), cfg)
    b = train(_student(), _data(digits), cfg)
    c = train(_student(), _data(digits), TrainConfig(**{**cfg.__dict__, "seed": 4}))
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert torch.equal(a.eval_class_logits, b.eval_class_logits)
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_on_step_true_cancels_after_first_call(digits) -> None:
    calls: list[dict] = []

    def on_step(info: dict) -> bool:
        calls.append(info)
        return True

    cfg = TrainConfig(objective="hard", epochs=3, batch_size=32, device="cpu", log_every=1)
    res = train(_student(), _data(digits), cfg, on_step=on_step)
    assert len(calls) == 1
    assert res.cancelled and res.steps == 1 and res.epochs_done == 0
    info = calls[0]
    assert info["step"] == 1 and info["epoch"] == 1 and info["epochs"] == 3
    assert info["total_steps"] == 3 * int(np.ceil(len(digits["ytr"]) / 32))
    assert info["loss"] > 0 and info["examples_per_s"] > 0


def test_on_step_reports_every_n_steps_and_epoch_end(digits) -> None:
    calls: list[dict] = []
    cfg = TrainConfig(objective="hard", epochs=1, batch_size=100, device="cpu", log_every=5)
    train(_student(), _data(digits), cfg, on_step=lambda i: calls.append(i))
    steps = int(np.ceil(len(digits["ytr"]) / 100))  # 13
    assert [c["step"] for c in calls] == [5, 10, steps]
    assert "eval_accuracy" in calls[-1] and "eval_accuracy" not in calls[0]


def test_checkpoint_then_resume_continues(digits, tmp_path) -> None:
    ck = str(tmp_path / "ck")
    base = dict(objective="kd", tau=2.0, batch_size=64, device="cpu")
    first = train(_student(), _data(digits), TrainConfig(epochs=2, checkpoint_dir=ck, **base))
    meta = json.loads((tmp_path / "ck" / "last.json").read_text())
    assert meta["epoch"] == 2 and meta["config"]["epochs"] == 2
    assert meta["best"] == max(h["eval_accuracy"] for h in first.history)
    assert not list((tmp_path / "ck").glob("*.tmp"))

    resumed = train(
        _student(seed=99),  # its init is overwritten by the checkpoint
        _data(digits),
        TrainConfig(epochs=3, checkpoint_dir=ck, resume=True, **base),
    )
    straight = train(_student(), _data(digits), TrainConfig(epochs=3, **base))
    assert resumed.resumed_from_epoch == 2
    assert resumed.epochs_done == 3
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # Same shuffles and restored optimizer state: identical to an uninterrupted run.
    assert [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in straight.history], rel=1e-5
    )
    assert json.loads((tmp_path / "ck" / "last.json").read_text())["epoch"] == 3


def test_resume_without_checkpoint_starts_fresh(digits, tmp_path) -> None:
    cfg = TrainConfig(
        objective="hard", epochs=1, device="cpu", checkpoint_dir=str(tmp_path), resume=True
    )
    res = train(_student(), _data(digits), cfg)
    assert res.resumed_from_epoch is None and res.epochs_done == 1


def test_resume_with_other_objective_is_refused(digits, tmp_path) -> None:
    base = dict(epochs=1, device="cpu", checkpoint_dir=str(tmp_path))
    train(_student(), _data(digits), TrainConfig(objective="hard", **base))
    with pytest.raises(ValueError, match="objective 'hard'.*'kd'"):
        train(_student(), _data(digits), TrainConfig(objective="kd", resume=True, **base))


def test_predict_batched_equals_whole(digits) -> None:
    model = _student().train()
    x = {"x": digits["Xte"][:50]}
    a = predict(model, x, batch_size=7)
    with torch.no_grad():
        b = model(x)
    assert torch.allclose(a, b, atol=1e-6)
    assert model.training  # mode restored


def test_class_logits() -> None:
    out = torch.tensor([[1.0, 2.0, 0.0, 0.5]])
    assert torch.allclose(class_logits(out[:, :2], "kd"), torch.log_softmax(out[:, :2], -1))
    lp = class_logits(out, "lelp", [2, 2], tau=2.0)
    assert lp.shape == (1, 2)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1))


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_fidelity_is_scored_at_temperature_1_for_a_tempered_lelp_student(tau: float) -> None:
    """A LELP student that reproduces the teacher's softmax(Z / tau) exactly (its subclass
    logits u = Z_c - tau log S_c on class c's block) scores KL ~ 0 and the teacher's ECE."""
    from lelp_studio import metrics as M

    rng = np.random.default_rng(0)
    Z = rng.normal(0, 3, size=(400, 3))
    y = np.where(rng.random(400) < 0.8, Z.argmax(1), rng.integers(0, 3, 400))
    sizes = [2, 3, 4]
    u = np.concatenate(
        [np.repeat(Z[:, [c]] - tau * np.log(s), s, axis=1) for c, s in enumerate(sizes)], 1
    )
    lp = class_logits(torch.tensor(u), "lelp", sizes, tau=tau).double().numpy()
    # P_tau itself is the teacher's tempered distribution ...
    P_tau = torch.tensor(u).div(tau).softmax(-1).split(sizes, -1)
    P_tau = torch.stack([b.sum(-1) for b in P_tau], -1).numpy()
    assert np.allclose(P_tau, M.softmax(Z, T=tau), atol=1e-9)
    # ... and the scores see the T = 1 distribution: no KL, the teacher's calibration.
    assert M.predictive_kl(Z, lp) < 1e-8
    assert M.ece(np.exp(lp), y) == pytest.approx(M.ece(M.softmax(Z), y), abs=1e-6)
    assert M.agreement(lp, Z) == 100.0
    if tau != 1.0:  # scored at tau, as before, the same student looked miscalibrated
        assert M.predictive_kl(Z, np.log(P_tau)) > 1e-3


def test_text_student_trains_on_token_batches() -> None:
    # Class 1 sequences contain token 3, class 0 token 4; padded to a shared width.
    g = torch.Generator().manual_seed(0)
    n, L = 64, 10
    y = torch.arange(n) % 2
    ids = torch.randint(5, 20, (n, L), generator=g)
    ids[:, 0] = torch.where(y == 1, 3, 4)
    lengths = torch.randint(2, L, (n,), generator=g)
    mask = (torch.arange(L)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    inputs = {"input_ids": ids, "attention_mask": mask}
    torch.manual_seed(0)
    model = BagOfEmbeddingsStudent(20, 16, 16, n_out=2)
    cfg = TrainConfig(objective="hard", epochs=15, batch_size=16, lr=1e-2, device="cpu")
    res = train(model, TrainData(inputs, y, eval_inputs=inputs, eval_y=y), cfg)
    assert res.history[-1]["eval_accuracy"] == 1.0


def test_take_trims_unused_padding() -> None:
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    inputs = {"input_ids": mask * 5, "attention_mask": mask}
    batch = predict_mod.take(inputs, torch.tensor([0, 1]))
    assert batch["attention_mask"].shape == (2, 2)
    assert batch["input_ids"].tolist() == [[5, 5], [5, 0]]


@pytest.mark.parametrize(
    ("objective", "kwargs", "match"),
    [
        ("lelp", {}, "needs targets"),
        ("kd", {"teacher_logits": None}, "teacher_logits"),
        ("kl", {}, "train.objective 'kl' is not known"),
    ],
)
def test_bad_data_errors(digits, objective: str, kwargs: dict, match: str) -> None:
    data = _data(digits)
    for k, v in kwargs.items():
        setattr(data, k, v)
    with pytest.raises(ValueError, match=match):
        train(_student(), data, TrainConfig(objective=objective, epochs=1, device="cpu"))


def test_wrong_head_width_is_clear(digits) -> None:
    cfg = TrainConfig(objective="lelp", epochs=1, device="cpu")
    with pytest.raises(ValueError, match="has 2 outputs but objective 'lelp' needs 5"):
        train(_student(n_out=2), _data(digits, [2, 3]), cfg)


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


def test_transformer_student_trains_and_checkpoints(tmp_path) -> None:
    from lelp_studio.students import TransformerStudent

    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    ids = torch.randint(5, 30, (32, 8), generator=g)
    ids[:, 0] = torch.where(y == 1, 3, 4)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    torch.manual_seed(0)
    model = TransformerStudent(30, 2, hidden=16, layers=1, heads=2, max_length=8)
    cfg = TrainConfig(
        objective="hard", epochs=2, batch_size=8, device="cpu", checkpoint_dir=str(tmp_path)
    )
    res = train(model, TrainData(inputs, y, eval_inputs=inputs, eval_y=y), cfg)
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert (tmp_path / "last.safetensors").is_file()


def _token_task(n: int = 96, L: int = 12, left: bool = False, seed: int = 0) -> TrainData:
    """Token rows of varied lengths (some empty), class marked by the first token."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    ids = torch.randint(5, 40, (n, L), generator=g)
    ids[:, 0] = torch.where(y == 1, 3, 4)
    lengths = torch.randint(0, L, (n,), generator=g)
    mask = (torch.arange(L)[None, :] < lengths[:, None]).long()
    if left:
        mask = mask.flip(1)
    inputs = {"input_ids": ids * mask, "attention_mask": mask}
    return TrainData(inputs, y, eval_inputs=inputs, eval_y=y)


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("bs", [1, 7, 32, 500])
def test_cpu_side_widths_cut_like_take(left: bool, bs: int) -> None:
    inputs = _token_task(n=50, left=left).train_inputs
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    cuts = predict_mod.batch_widths(predict_mod.row_widths(inputs), order, bs)
    assert len(cuts) == -(-50 // bs)
    for i, width in enumerate(cuts):
        idx = order[i * bs : (i + 1) * bs]
        old, new = predict_mod.take(inputs, idx), predict_mod.take_rows(inputs, idx, width)
        assert {k: v.tolist() for k, v in old.items()} == {k: v.tolist() for k, v in new.items()}


def test_batch_widths_round_up_and_features_are_not_cut() -> None:
    widths = torch.tensor([3, 9, 0, 1])
    assert predict_mod.batch_widths(widths, torch.arange(4), 2) == [9, 1]
    assert predict_mod.batch_widths(widths, torch.arange(4), 2, multiple=8) == [16, 8]
    assert predict_mod.row_widths({"x": torch.ones(4, 3)}) is None
    assert predict_mod.batch_widths(None, torch.arange(4), 3) == [0, 0]


@pytest.mark.parametrize("objective", ["hard", "kd"])
def test_new_batching_trains_exactly_like_per_batch_take(monkeypatch, objective: str) -> None:
    data = _token_task()
    data.teacher_logits = torch.randn(96, 2, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(objective=objective, epochs=2, batch_size=16, device="cpu")

    def run() -> tuple[list[dict], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = BagOfEmbeddingsStudent(40, 16, 16, n_out=2)
        res = train(model, data, cfg)
        return res.history, model.state_dict()

    new_hist, new_sd = run()
    monkeypatch.setattr(
        train_mod, "take_rows", lambda inputs, idx, w: predict_mod.take(inputs, idx)
    )
    old_hist, old_sd = run()
    drop = ("examples_per_s",)
    strip = [{k: v for k, v in h.items() if k not in drop} for h in (*new_hist, *old_hist)]
    assert strip[: len(new_hist)] == strip[len(new_hist) :]
    assert all(torch.equal(new_sd[k], old_sd[k]) for k in new_sd)


def test_compile_flag_trains_and_checkpoints_plain_weights(tmp_path) -> None:
    try:
        torch.compile(lambda t: t * 2)(torch.ones(2))
    except Exception as err:  # noqa: BLE001 - any failure means no usable compiler here
        pytest.skip(f"torch.compile is unavailable on this build/machine: {err}")
    data = _token_task(n=64)
    data.train_inputs = {"x": torch.nn.functional.one_hot(data.y, 4).float()}
    data.eval_inputs = data.train_inputs
    torch.manual_seed(0)
    model = MLPStudent(4, 8, 2, layers=1)
    cfg = TrainConfig(
        objective="hard", epochs=3, batch_size=16, lr=3e-2, device="cpu", compile=True,
        checkpoint_dir=str(tmp_path),
    )  # fmt: skip
    res = train(model, data, cfg)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.history[-1]["eval_accuracy"] == 1.0
    from safetensors import safe_open

    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as f:
        keys = [k for k in f.keys() if k.startswith("model.")]  # noqa: SIM118
    assert sorted(keys) == sorted(f"model.{k}" for k in model.state_dict())
