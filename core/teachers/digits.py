"""Teacher kind ``digits-mlp``: a small MLP on pixel features, for the offline demo."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..config import TeacherSpec
from ..types import Dataset, TeacherOutputs
from .common import HSink, TeacherError, _outputs


def _compute_digits_mlp(dataset: Dataset, spec: TeacherSpec, sink: HSink) -> TeacherOutputs:
    """A 2-hidden-layer ReLU MLP on standardised pixels, trained on CPU in about a second."""
    train = dataset.splits["train"]
    if train.features is None:
        raise TeacherError(
            f"teacher kind 'digits-mlp' needs a feature dataset, but '{dataset.name}' is text; "
            "use teacher kind 'minilm' or 'hf'"
        )
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    X = np.asarray(train.features, dtype=np.float32)
    mean, std = X.mean(0), X.std(0)
    std[std < 1e-6] = 1.0

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(a, dtype=np.float32) - mean) / std)

    d_in, k = X.shape[1], spec.hidden
    body = nn.Sequential(nn.Linear(d_in, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU())
    head = nn.Linear(k, dataset.n_classes)
    model = nn.Sequential(body, head)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = prep(X), torch.as_tensor(np.asarray(train.y), dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    n, bs, steps = len(yt), 128, 400
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(bs, n),), generator=gen)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for s, split in dataset.splits.items():
            if split.features is None:
                raise TeacherError(f"split '{s}' of '{dataset.name}' has no features")
            h = body(prep(split.features))
            H[s], Z[s] = h.numpy(), head(h).numpy()
    meta: dict[str, object] = {
        "teacher": f"digits-mlp ({d_in}-{k}-{k}-{dataset.n_classes})",
        "kind": "digits-mlp",
        "pooling": "penultimate",
        "device": "cpu",
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    W, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    return _outputs(dataset, H, Z, W, b, meta, sink)
