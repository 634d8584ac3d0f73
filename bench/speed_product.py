"""The product's own commands at scale (issue 14): ``lelp embed``, ``lelp subclasses`` and
``lelp distill`` (one epoch) on an arrays teacher with ``rows`` training rows.

Each command runs as its own process, as a user runs it, so its wall time includes start-up
and its peak RSS (``wait4``'s ``ru_maxrss``: the resident high-water mark, memory-mapped file
pages included) is its own. They run in that order on a fresh workspace: ``embed`` reads the
teacher file and stores H (a cache miss), the other two find it cached. The figures sit beside
the library's LELP fit + targets on the same rows (``bench/speed.py``'s LELP section).

The data: ``bench/speed.py``'s synthetic embeddings (two classes, four planted groups each)
as an ``.npz`` arrays teacher with float32 H, and a dataset folder of Parquet files (short
texts, the label, the planted group as a latent column); dev and test have ``rows // 50``
rows each (at least 200).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

COMMANDS = ("embed", "subclasses", "distill")
BLOCK = 65_536


def _write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` (uncompressed members) written a block of rows at a time, so a 1.6M x 384
    float32 H made from a float16 memmap never sits in memory whole."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, (a, dtype) in arrays.items():
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False,
                "shape": tuple(a.shape),
            }
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                for i in range(0, max(1, a.shape[0]), BLOCK):
                    f.write(np.ascontiguousarray(a[i : i + BLOCK], dtype=dtype).tobytes())
    os.replace(tmp, path)


def make_product_data(folder: Path, rows: int, dim: int, synthetic: dict[str, Path]) -> Path:
    """The dataset folder and ``teacher.npz`` for ``rows`` training rows, from the synthetic
    arrays in ``synthetic`` (``bench.speed.make_synthetic`` of ``rows + 2 * extra`` rows);
    reused when present. Returns the folder."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "teacher.npz").is_file():
        return folder
    H = np.load(synthetic["H"], mmap_mode="r")
    y, latent, Z, W = (np.load(synthetic[k]) for k in ("y", "latent", "Z", "W"))
    extra = (len(y) - rows) // 2
    cuts = {"train": (0, rows), "dev": (rows, rows + extra), "test": (rows + extra, len(y))}
    words = np.array([f"w{i}" for i in range(50)])
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {"W": (W, np.float32), "b": (np.zeros(len(W)), np.float32)}
    for split, (a, b) in cuts.items():
        picks = words[rng.integers(0, len(words), (b - a, 6))]
        text = pd.Series([" ".join(r) for r in picks.tolist()])
        df = pd.DataFrame({"text": text, "label": y[a:b], "group": latent[a:b]})
        df.to_parquet(folder / f"{split}.parquet", index=False)
        arrays[f"H_{split}"] = (H[a:b], np.float32)
        arrays[f"Z_{split}"] = (Z[a:b], np.float32)
    _write_npz(folder / "teacher.npz", arrays)
    return folder


def write_config(folder: Path, S: int) -> Path:
    """The run config every command reads (one epoch of the bag student)."""
    cfg = folder / "run.yaml"
    cfg.write_text(
        "dataset:\n"
        f"  source: {folder}\n"
        "  latent_cols: [group]\n"
        "teacher:\n"
        "  kind: arrays\n"
        f"  path: {folder / 'teacher.npz'}\n"
        "  tokenizer: minilm\n"
        "subclasses:\n"
        "  method: lelp\n"
        f"  n_subclasses: {S}\n"
        "student:\n"
        "  kind: bag\n"
        "train:\n"
        "  objective: lelp\n"
        "  epochs: 1\n"
    )
    return cfg


def lelp_command() -> list[str]:
    """The ``lelp`` console script beside this interpreter, else ``python -m lelp_studio.cli``."""
    script = Path(sys.executable).with_name("lelp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lelp_studio.cli"]


def _status_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (MB): anonymous (its own heap, tensors, arrays in
    memory) and file-backed (memory-mapped files, shared libraries), from /proc."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


class _Watch(threading.Thread):
    """Samples a child's anonymous and file-backed RSS every ``every`` s (their peaks: what
    ``ru_maxrss`` lumps together) and kills it once ``stop_when()`` is true."""

    def __init__(self, pid: int, every: float, stop_when: Any = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.stop_when = pid, every, stop_when
        self.peak: dict[str, float] = {}
        self.killed = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            for k, v in _status_mb(self.pid).items():
                self.peak[k] = max(self.peak.get(k, 0.0), v)
            if self.stop_when is not None and not self.killed and self.stop_when():
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)


def run_command(
    argv: list[str], log: Path, *, sample_s: float = 0.25, stop_when: Any = None
) -> dict[str, Any]:
    """Run one command to completion: wall and CPU seconds, its own peak RSS (``wait4``), the peaks
    of its anonymous and file-backed RSS (sampled every ``sample_s``), exit status, last
    lines of its output (stdout and stderr go to ``log``). ``stop_when()``, checked at each
    sample, kills the command (SIGKILL) once true: an interruption, as a crash would be."""
    import lelp_studio

    env = dict(os.environ)
    # the child imports the same lelp_studio as this process (a worktree's, when run there)
    where = str(Path(lelp_studio.__file__).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([where, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        # argv is lelp_command() plus the benchmark's own arguments
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        watch = _Watch(proc.pid, sample_s, stop_when)
        watch.start()
        _, status, usage = os.wait4(proc.pid, 0)
        watch.done.set()
        watch.join()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").replace("\r", "\n").splitlines()
    tail = [x for x in lines if x.strip() and "it/s]" not in x and "s/it]" not in x][-6:]
    res = {
        "returncode": proc.returncode,
        "seconds": round(wall, 2),
        # CPU seconds: a fairer yardstick than wall time on a machine shared with other work
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # KiB on Linux
        "peak_anon_mb": round(watch.peak.get("RssAnon", 0.0)),
        "peak_file_mb": round(watch.peak.get("RssFile", 0.0)),
        "tail": tail,
    }
    if watch.killed:
        res["killed"] = True
    return res


def bench_product(cache: Path, rows: int, dim: int, S: int, make_synthetic: Any) -> dict[str, Any]:
    """The three commands on a fresh workspace; the data is made once under ``cache``."""
    extra = max(200, rows // 50)
    t0 = time.perf_counter()
    synthetic = make_synthetic(cache, rows + 2 * extra, dim)
    folder = make_product_data(cache / f"product_{rows}x{dim}", rows, dim, synthetic)
    cfg = write_config(folder, S)
    res: dict[str, Any] = {
        "rows": rows,
        "dim": dim,
        "n_subclasses": S,
        "dev_test_rows": extra,
        "teacher_file": "npz, float32 H",
        "data_seconds": round(time.perf_counter() - t0, 1),
        "command": " ".join([Path(lelp_command()[0]).name, *lelp_command()[1:]]),
    }
    ws = cache / f"product_ws_{rows}x{dim}"
    shutil.rmtree(ws, ignore_errors=True)
    res["commands"] = {}
    for name in COMMANDS:
        argv = [*lelp_command(), name, str(cfg), "-w", str(ws)]
        if name == "distill":
            argv += ["--headroom-seeds", "0"]
        res["commands"][name] = run_command(argv, cache / f"product_{name}.log")
    shutil.rmtree(ws, ignore_errors=True)
    return res


def markdown(p: dict[str, Any], library: dict[str, Any] | None) -> list[str]:
    """The section for speed.md: one row per command beside the library's LELP fit + targets
    on the same rows in the same run, with each command's ratio to it."""
    lib_s = lib_mb = None
    if library and "error" not in library:
        lib_s, lib_mb = library["fit_plus_targets_s"], library["peak_rss_mb"]

    def ratio(v: float, base: float | None) -> str:
        return f"x{v / base:.2f}" if base else ""

    lines = [
        f"## Product commands on a {p['rows']:,} x {p['dim']} arrays teacher "
        f"(S={p['n_subclasses']}, {p['teacher_file']}; dev and test {p['dev_test_rows']:,} "
        "rows each)",
        "",
        "| command | exit | wall s | x library | peak RSS MB | x library | last output |",
        "|---|---|---|---|---|---|---|",
    ]
    if lib_s is not None:
        lines.append(
            f"| library LELP fit + targets (float16 memmap, in-process) | 0 | {lib_s} | x1.00 | "
            f"{lib_mb} | x1.00 | ARI on the planted groups {library.get('ari_latent_sample')} |"
        )
    for name, c in p["commands"].items():
        last = (c["tail"][-1] if c["tail"] else "").replace("|", "/")[:160]
        lines.append(
            f"| lelp {name} | {c['returncode']} | {c['seconds']} | {ratio(c['seconds'], lib_s)} "
            f"| {c['peak_rss_mb']} | {ratio(c['peak_rss_mb'], lib_mb)} | {last} |"
        )
    lines.append("")
    if lib_s is not None:
        lines += [
            f"x library: against the library's LELP fit + targets on the same "
            f"{library.get('rows', '?'):,} rows, measured in the same run. Command wall times "
            "include the interpreter's start-up and imports, reading the dataset (Parquet, "
            "texts), and for embed reading the teacher file and storing H; subclasses also "
            "assigns every row and scores recovery; distill also tokenises and trains one epoch.",
            "",
        ]
    return lines


def judge(p: dict[str, Any], goal_s: float, goal_mb: float) -> list[str]:
    """Goals for the product's LELP step: ``lelp subclasses`` (fit + targets, cached H)."""
    c = p["commands"].get("subclasses")
    if not c:
        return []
    if c["returncode"] != 0:
        return [f"lelp subclasses failed (exit {c['returncode']}): {c['tail'][-1:]}"]
    out = []
    for label, v, goal, unit in (
        ("lelp subclasses wall", c["seconds"], goal_s, "s"),
        ("lelp subclasses peak RSS", c["peak_rss_mb"], goal_mb, "MB"),
    ):
        out.append(f"{label} < {goal} {unit}: {v} {unit} ({'met' if v < goal else 'NOT met'})")
    for name in ("embed", "distill"):
        e = p["commands"].get(name)
        if e and e["returncode"] != 0:
            out.append(f"lelp {name} failed (exit {e['returncode']}): {e['tail'][-1:]}")
    return out
