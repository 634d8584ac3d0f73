"""The Subspaces page's comparison baselines: each computed once, the heavy ones off the rerun.

Issue 18: with every method selected on amazon_multidomain an S change took 91 s, because each
rerun refitted UMAP and Ward for the new S before drawing anything.

- **Once per key.** A baseline's pseudo-subclass per training row is kept per (workspace,
  teacher key, dataset spec, its spec: method, S, seed, class source, latent column) plus the
  manual group names; the teacher key already holds the dataset's fingerprint. Oracle and
  manual groups do not depend on S, so their key leaves S out. Ward's tree and the UMAP
  models do not depend on S either: they are kept per key without S
  (``ClusterSubclasses.structure_``), so a new S cuts the tree or runs k-means in UMAP's 5-D
  space instead of refitting.
- **Heavy ones in the background.** UMAP + k-means, and Ward above ``HEAVY_ROWS`` training
  rows, run on one worker thread; k-means, oracle and manual groups run on the rerun and
  show at once. ``show_background`` polls the worker from a fragment at the top of the page
  and reruns the page when the results are in.
- **Where.** In memory, one ``Store`` per server process (``st.cache_resource``), shared by
  sessions: not the workspace, because persisting the UMAP models means pickling them (the
  workspace never unpickles) and an assignment is a preview that training recomputes from
  the spec anyway. Not ``st.cache_resource`` per function: a cached call blocks the rerun
  until it returns, and one started from a thread blocks the next rerun on that key's lock;
  a future per key lets the page draw what is ready and ask again later.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import streamlit as st

from lelp_studio import analysis
from lelp_studio.config import SubclassSpec
from lelp_studio.errors import user_errors
from lelp_studio.subclasses import fit_subclasser

from .cache import fit_args_at, fit_inputs
from .state import dataset_spec, spec_json, workspace

#: What the page offers, in order, with the names its tables use.
LABELS = {
    "kmeans": "k-means",
    "agglomerative": "agglomerative",
    "umap-kmeans": "UMAP + k-means",
    "oracle": "oracle (latent column)",
    "manual": "manual groups",
}
#: The choice a new dataset starts from: light methods only.
DEFAULT = ["kmeans"]
#: Ward (on at most 3,000 sampled rows per class) plus placing every row: background above this.
HEAVY_ROWS = 10_000
#: Seconds between the background status's checks.
POLL_S = 1.5
#: Seconds a rerun waits for queued baselines, so quick ones (a new S once UMAP's models are
#: kept) show in the same rerun instead of one poll later.
GRACE_S = 0.5
_S_FREE = ("oracle", "manual")  # their pseudo-subclasses do not depend on S
_STRUCTURED = ("agglomerative", "umap-kmeans")  # keep their S-free structure_


def is_heavy(method: str, n_rows: int) -> bool:
    """Whether a baseline runs in the background rather than on the page's rerun."""
    return method == "umap-kmeans" or (method == "agglomerative" and n_rows > HEAVY_ROWS)


@dataclass(frozen=True)
class Baseline:
    """One compared method as the page shows it: its assignment when ready, or its error."""

    method: str
    assign: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    error: str | None = None
    future: Future[Any] | None = None
    since: float = 0.0  # time.monotonic() when first asked for

    @property
    def label(self) -> str:
        return LABELS[self.method]

    @property
    def pending(self) -> bool:
        return self.assign is None and self.error is None


class Store:
    """Futures by key, each computed at most once: on the calling thread (``now``) or on the
    one background thread (``later``). Keeps the ``max_kept`` most recently asked for (an
    assignment is 8 bytes a training row: 32 of them at 1.6M rows are 400 MB); a running or
    queued one is never dropped."""

    def __init__(self, max_kept: int = 32) -> None:
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._futures: OrderedDict[Hashable, Future[Any]] = OrderedDict()
        self._since: dict[Hashable, float] = {}
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def get(self, key: Hashable) -> Future[Any] | None:
        with self._lock:
            fut = self._futures.get(key)
            if fut is not None:
                self._futures.move_to_end(key)  # the least recently asked for leave first
            return fut

    def done_result(self, key: Hashable) -> Any:
        """The result under ``key`` when it finished without error, else None."""
        fut = self.get(key)
        if fut is None or not fut.done() or fut.exception() is not None:
            return None
        return fut.result()

    def put(self, key: Hashable, value: Any) -> None:
        fut: Future[Any] = Future()
        fut.set_result(value)
        with self._lock:
            self._keep(key, fut)

    def now(self, key: Hashable, fn: Callable[[], Any]) -> Future[Any]:
        """The finished future of ``fn()`` under ``key``, computed here on a miss (a
        failure is kept too: the same inputs fail the same way)."""
        with self._lock:
            fut = self._futures.get(key)
            mine = fut is None
            if fut is None:
                fut = Future()
                fut.set_running_or_notify_cancel()
                self._keep(key, fut)
        if mine:
            try:
                fut.set_result(fn())
            except Exception as err:  # noqa: BLE001 - kept, and raised by result()
                fut.set_exception(err)
            except BaseException:  # interrupted: forget the key, wake whoever waits on it
                with self._lock:
                    self._futures.pop(key, None)
                fut.set_exception(RuntimeError("interrupted; rerun the page"))
                raise
        fut.exception()  # waits when another session computes the same key
        return fut

    def later(self, key: Hashable, fn: Callable[[], Any]) -> Future[Any]:
        """The future of ``fn()`` under ``key``, queued on the background thread on a miss."""
        with self._lock:
            fut = self._futures.get(key)
            if fut is None:
                fut = Future()
                self._keep(key, fut)
                self._queue.put((fut, fn))
                if self._worker is None:
                    # a daemon thread: stopping the server must not wait for a UMAP fit
                    # (ThreadPoolExecutor's workers are joined at exit)
                    self._worker = threading.Thread(
                        target=self._work, name="lelp-baselines", daemon=True
                    )
                    self._worker.start()
            return fut

    def _work(self) -> None:
        while True:
            fut, fn = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as err:  # noqa: BLE001 - handed to whoever reads the future
                fut.set_exception(err)

    def since(self, key: Hashable) -> float:
        """``time.monotonic()`` when ``key`` was first asked for."""
        with self._lock:
            return self._since.get(key, time.monotonic())

    def pending(self) -> int:
        """How many entries are queued or running."""
        with self._lock:
            return sum(not f.done() for f in self._futures.values())

    def _keep(self, key: Hashable, fut: Future[Any]) -> None:
        self._futures[key] = fut
        self._futures.move_to_end(key)
        self._since.setdefault(key, time.monotonic())
        for old in [k for k, f in self._futures.items() if f.done()]:
            if len(self._futures) <= self.max_kept:
                break
            del self._futures[old]
            self._since.pop(old, None)


@st.cache_resource(show_spinner=False)
def store() -> Store:
    """The server's one baseline store (shared by every session)."""
    return Store()


def _fit(
    shared: Store,
    spec: SubclassSpec,
    inputs: dict[str, Any],
    label_names: Sequence[str],
    group_names: Sequence[str] | None,
    structure_key: Hashable | None,
) -> tuple[np.ndarray, list[str]]:
    """Fit one baseline and assign the training rows (thread-safe: arrays in, arrays out),
    through the function training uses; clustering reuses or keeps its S-free structure."""
    structure = None if structure_key is None else shared.done_result(structure_key)
    sub = fit_subclasser(spec, **inputs, structure=structure)
    if structure_key is not None and structure is None:
        shared.put(structure_key, sub.structure_)
    assign = np.asarray(sub.assign(inputs["H"], inputs["y"]))
    return assign, analysis.pseudo_subclass_names(sub, label_names, group_names)


def _args(spec: SubclassSpec, key: str, n_classes: int) -> tuple[str, ...]:
    return fit_args_at(str(workspace().root), key, spec_json(dataset_spec()), spec, n_classes)


def compare_baselines(
    methods: Sequence[str],
    *,
    key: str,
    sizes: Sequence[int],
    seed: int,
    class_source: str,
    latent_col: str | None,
    label_names: Sequence[str],
    group_names: Sequence[str],
) -> list[Baseline]:
    """The chosen baselines on the LELP preview's S, seed and class sets: light ones computed
    now (once per key), heavy ones queued on the background thread (``pending`` until done).
    Call it where a spinner should show: a light fit runs inside this call."""
    shared = store()
    n_sub: int | list[int] = list(sizes) if len(set(sizes)) > 1 else int(sizes[0])
    futures: list[tuple[str, Future[Any] | None, float, str | None]] = []
    for m in methods:
        spec = SubclassSpec(  # only what the method reads: the rest would split its key
            method=m,  # type: ignore[arg-type]
            n_subclasses=1 if m in _S_FREE else n_sub,
            seed=0 if m in _S_FREE else int(seed),
            class_source=class_source,  # type: ignore[arg-type]
            latent_col=latent_col if m == "oracle" else None,
        )
        try:
            args = _args(spec, key, len(label_names))
            fut = shared.get(args)
            if fut is None:
                inputs = fit_inputs(*args[:3], spec)
                s_free = _args(spec.model_copy(update={"n_subclasses": 1}), key, len(label_names))
                job = partial(
                    _fit,
                    shared,
                    spec,
                    inputs,
                    list(label_names),
                    list(group_names) if m == "manual" else None,
                    ("structure", *s_free) if m in _STRUCTURED else None,
                )
                run = shared.later if is_heavy(m, len(inputs["y"])) else shared.now
                fut = run(args, job)
        except (*user_errors(), ValueError) as err:
            futures.append((m, None, 0.0, str(err)))
            continue
        futures.append((m, fut, shared.since(args), None))
    wait([f for _, f, _, _ in futures if f is not None], timeout=GRACE_S)
    return [
        Baseline(m, error=err) if f is None else _result(m, f, since)
        for m, f, since, err in futures
    ]


def _result(method: str, fut: Future[Any], since: float) -> Baseline:
    if not fut.done():
        return Baseline(method, future=fut, since=since)
    err = fut.exception()
    if err is None:
        assign, names = fut.result()
        return Baseline(method, assign=assign, names=names, future=fut, since=since)
    if isinstance(err, (*user_errors(), ValueError)):
        return Baseline(method, error=str(err), future=fut, since=since)
    raise err  # a bug: keep its traceback


def show_background(runs: Sequence[Baseline], sizes: Sequence[int]) -> None:
    """While baselines compute in the background: a status line that checks every
    ``POLL_S`` seconds and reruns the whole page once they are all done, so they appear
    under "Compare" without a click. Draw it at the top of the page (the page's busy
    container), where a person looks while waiting."""
    waiting = [(r.label, r.future) for r in runs if r.pending and r.future is not None]
    if not waiting:
        return
    since = min(r.since for r in runs if r.pending)
    S = str(sizes[0]) if len(set(sizes)) == 1 else "/".join(map(str, sizes))

    @st.fragment(run_every=POLL_S)
    def _poll() -> None:
        left = [label for label, f in waiting if not f.done()]
        if not left:
            st.rerun()
        st.status(
            f"Computing in the background: {', '.join(left)} at S = {S} "
            f"({time.monotonic() - since:.0f} s). The page stays usable; the results appear "
            "under **Compare with other pseudo-subclasses** when ready.",
            state="running",
        )

    _poll()
