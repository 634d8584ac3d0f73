"""A million-text transfer set through the product's own commands (issue 15, item 2).

What one run records, each command in its own process as a user runs it (its wall time, rows
per second, peak RSS from ``wait4`` and the sampled peaks of its anonymous and file-backed
RSS, via ``bench/speed_product.run_command``):

- loading the dataset with its transfer file (the library's ``load_dataset``, in a worker
  process): rows/s, peak RSS and what the transfer texts themselves take as Python strings;
- ``lelp embed`` on a fresh workspace (the teacher pass over every split, H streamed into
  float16 chunk files);
- ``lelp embed`` on a second workspace, killed (SIGKILL) once about half the transfer chunks
  are finished, then ``lelp embed`` again, which resumes: its wall time against the fresh
  pass (the baseline, same run), and its stored H and Z against the fresh pass's (equal
  content hashes);
- ``lelp subclasses``, then ``lelp distill`` with LELP and with KD (one epoch of the bag
  student over labeled + transfer rows; targets float16, computed in blocks);
- MiniLM's own extraction rate on a subset (``--minilm-texts``) beside the stand-in
  teacher's on the same texts (the library's ``teachers.extract``, the pass the teacher
  kinds run), so the 1M figures can be scaled to MiniLM.

The teacher is a stand-in for MiniLM: a randomly initialised BERT sequence classifier (one
layer, MiniLM's width 384, so H is as large) saved with ``save_pretrained`` next to the
bundled MiniLM tokenizer's files, used as teacher kind ``hf`` (nothing is downloaded). The
data are synthetic short texts written for this benchmark into a temporary folder (removed
afterwards unless ``--keep``), never committed. Devices are ``auto``: the same script runs
the teacher and the student on a GPU when there is one.

    python bench/transfer_scale.py                        # 1M rows, results in bench/results/
    python bench/transfer_scale.py --rows 20000 --minilm-texts 500 --out /tmp/ts   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``bench`` and ``lelp_studio`` importable
    sys.path.insert(0, str(REPO))

from bench.speed_product import lelp_command, run_command  # noqa: E402

GOAL_RSS_MB = 4096

_WORDS = " ".join(
    [
        "the a this that movie film show plot story actor acting cast scene ending music score",
        "was is felt seemed looked really very quite so too not never always great good fine",
        "awful bad boring dull slow fast fun funny sad lovely brilliant weak strong loved hated",
        "liked enjoyed watched again today tonight with without my our friends family kids and",
        "but or because although while after before it everything nothing something",
    ]
).split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` short texts of 4 to 14 words drawn from a small English vocabulary (about 12
    tokens each with the MiniLM tokenizer); a million are almost all distinct."""
    rng = np.random.default_rng(seed)
    words = np.array(_WORDS, dtype=object)
    lengths = rng.integers(4, 15, n)
    picks = words[rng.integers(0, len(words), int(lengths.sum()))]
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(p) for p in np.split(picks, cuts)]


def make_tiny_teacher(
    folder: Path, hidden: int = 384, layers: int = 1, num_labels: int = 2, seed: int = 0
) -> Path:
    """A randomly initialised BERT sequence classifier saved in ``folder`` with the bundled
    MiniLM tokenizer's files: a teacher kind ``hf`` checkpoint that costs a fraction of
    MiniLM per text (one layer instead of six) and gives H of MiniLM's width."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lelp_studio.teachers import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), intermediate_size=hidden,
        max_position_embeddings=128, num_labels=num_labels,
        id2label={i: f"c{i}" for i in range(num_labels)},
        label2id={f"c{i}": i for i in range(num_labels)},
    )  # fmt: skip
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def make_data(folder: Path, rows: int, labeled: int, eval_rows: int, fmt: str) -> Path:
    """A dataset folder: ``train``/``dev``/``test`` Parquet files (text, label c0/c1) and a
    transfer file of ``rows`` texts in ``fmt`` (parquet, csv, jsonl or txt)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    texts = synthetic_texts(labeled + 2 * eval_rows, seed=1)
    y = np.random.default_rng(1).integers(0, 2, len(texts))
    cuts = {"train": (0, labeled), "dev": (labeled, labeled + eval_rows)}
    cuts["test"] = (labeled + eval_rows, len(texts))
    for split, (a, b) in cuts.items():
        df = pd.DataFrame({"text": texts[a:b], "label": [f"c{v}" for v in y[a:b]]})
        df.to_parquet(folder / f"{split}.parquet", index=False)
    return write_transfer(folder / f"transfer.{fmt}", synthetic_texts(rows, seed=2))


def write_transfer(path: Path, texts: list[str]) -> Path:
    """``texts`` as a transfer file in the format its suffix names (.parquet, .csv, .jsonl:
    a ``text`` column; .txt: one per line)."""
    import pandas as pd

    fmt = path.suffix.lstrip(".")
    if fmt == "txt":
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    elif fmt == "parquet":
        pd.DataFrame({"text": texts}).to_parquet(path, index=False, row_group_size=65_536)
    elif fmt == "csv":
        pd.DataFrame({"text": texts}).to_csv(path, index=False)
    else:
        pd.DataFrame({"text": texts}).to_json(path, orient="records", lines=True)
    return path


def write_config(folder: Path, transfer: Path, teacher: Path, name: str = "run.yaml") -> Path:
    """The run config every command reads: teacher kind hf, LELP with 4 subclasses per
    class, one epoch of the bag student, devices auto."""
    cfg = folder / name
    cfg.write_text(
        "dataset:\n"
        f"  source: {folder}\n"
        f"  transfer: {transfer}\n"
        "teacher:\n"
        "  kind: hf\n"
        f"  path: {teacher}\n"
        "  max_length: 64\n"
        "subclasses:\n"
        "  method: lelp\n"
        "  n_subclasses: 4\n"
        "student:\n"
        "  kind: bag\n"
        "train:\n"
        "  objective: lelp\n"
        "  epochs: 1\n"
        "  batch_size: 512\n"
    )
    return cfg


# --------------------------------------------------------------------------- workers


def _peak_rss_mb() -> float:
    from bench.speed import _rss_peak_mb

    return _rss_peak_mb()


def worker_load(cfg_path: str) -> dict[str, Any]:
    """Load the dataset as every command does; time, peak RSS and the transfer texts' size."""
    from lelp_studio.config import load_config
    from lelp_studio.data import load_dataset
    from lelp_studio.types import TRANSFER

    cfg = load_config(cfg_path, [])
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset)
    wall = time.perf_counter() - t0
    texts = ds.splits[TRANSFER].texts or []
    strings = sum(sys.getsizeof(t) for t in texts) + sys.getsizeof(texts)
    return {
        "seconds": round(wall, 2),
        "rows": ds.transfer_info.get("from_file", 0),
        "kept": ds.n_transfer,
        "transfer_info": ds.transfer_info,
        "peak_rss_mb": round(_peak_rss_mb()),
        "transfer_texts_mb": round(strings / 2**20, 1),
        "mean_chars": round(float(np.mean([len(t) for t in texts[:100_000]])), 1),
    }


def worker_load_whole(cfg_path: str) -> dict[str, Any]:
    """The baseline for ``worker_load``: the labeled dataset loaded, then the transfer file
    read whole (the library's ``read_table``, as labeled files are read) and its texts
    listed; the time of the read and the peak RSS."""
    from lelp_studio.config import load_config
    from lelp_studio.data import load_dataset, read_table

    cfg = load_config(cfg_path, [])
    assert cfg.dataset.transfer is not None
    path = Path(cfg.dataset.transfer)
    load_dataset(cfg.dataset.model_copy(update={"transfer": None}))  # as the streamed load does
    t0 = time.perf_counter()
    if path.suffix == ".txt":  # what the transfer reader did before it streamed
        texts = path.read_bytes().decode("utf-8").splitlines()
    else:
        texts = read_table(path)[cfg.dataset.text_col].astype(str).tolist()
    return {"seconds": round(time.perf_counter() - t0, 2), "rows": len(texts),
            "peak_rss_mb": round(_peak_rss_mb())}  # fmt: skip


def worker_rates(teacher: str, n: int) -> dict[str, Any]:
    """MiniLM and the stand-in teacher on the same ``n`` texts, through ``teachers.extract``
    (device and precision auto, as the teacher kinds run it)."""
    from lelp_studio.config import TeacherSpec
    from lelp_studio.teachers import extract, pick_device, resolve_precision
    from lelp_studio.teachers.hf import _hf_model_fn, _load_hf
    from lelp_studio.teachers.minilm import _load_minilm, _minilm_fn

    device = pick_device()
    texts = synthetic_texts(n, seed=3)
    quiet = lambda *a: None  # noqa: E731
    encoder, tok = _load_minilm()
    encoder.to(device).eval()
    model, hf_tok, _ = _load_hf(TeacherSpec(kind="hf", path=teacher))
    model.to(device)
    fn, _handle = _hf_model_fn(model, model.classifier)
    res: dict[str, Any] = {"device": str(device), "precision": resolve_precision("auto", device)}
    for name, (f, t) in {"minilm": (_minilm_fn(encoder), tok), "stand-in": (fn, hf_tok)}.items():
        extract(f, t, texts[:256], 64, 64, quiet, device=device)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        extract(f, t, texts, 64, 64, quiet, device=device)
        wall = time.perf_counter() - t0
        res[name] = {"n": n, "seconds": round(wall, 2), "per_s": round(n / wall, 1),
                     "cpu_seconds": round(time.process_time() - c0, 2)}  # fmt: skip
    res["minilm_over_stand_in"] = round(res["minilm"]["per_s"] / res["stand-in"]["per_s"], 3)
    return res


def _in_worker(args: list[str]) -> dict[str, Any]:
    """One worker in its own interpreter (its peak RSS is its own), its JSON result."""
    import subprocess

    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(  # noqa: S603 - this interpreter re-runs this very script
        [sys.executable, __file__, "--worker", *args],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_loads(
    data: Path, teacher: Path, transfer: Path, formats: list[str], rows: int
) -> dict[str, Any]:
    """Per transfer-file format: the dataset loaded as the commands load it (streamed) and,
    as the baseline, the file read whole; each in its own process."""
    out: dict[str, Any] = {}
    texts: list[str] | None = None
    for fmt in formats:
        path = data / f"transfer.{fmt}"
        if not path.is_file():
            texts = texts or synthetic_texts(rows, seed=2)  # make_data's transfer texts
            write_transfer(path, texts)
        cfg = write_config(data, path, teacher, f"run_{fmt}.yaml")
        res = {"file_mb": round(path.stat().st_size / 2**20, 1)}
        res["streamed"] = _in_worker(["load", str(cfg)])
        res["whole"] = _in_worker(["load-whole", str(cfg)])
        s, w = res["streamed"], res["whole"]
        if "error" not in s and "error" not in w:
            res["streamed_over_whole_rss"] = round(s["peak_rss_mb"] / w["peak_rss_mb"], 2)
        out[fmt] = res
        if path != transfer:
            path.unlink()
        print(json.dumps({f"load {fmt}": res}), flush=True)
    return out


# --------------------------------------------------------------------------- stages


def _chunks_done(ws: Path, split: str = "transfer") -> int:
    """Finished chunks of ``split`` in any claimed staging folder of ``ws``."""
    n = 0
    for manifest in ws.glob(f"staging/*/{split}.chunks.json"):
        try:
            n = max(n, len(json.loads(manifest.read_text()).get("done") or {}))
        except (OSError, ValueError):
            continue
    return n


def _stored(ws: Path) -> dict[str, str]:
    """Content hashes of the stored teacher arrays (one teacher key per workspace here)."""
    from lelp_studio.store import Workspace

    with Workspace(ws).connect() as con:
        rows = con.execute("SELECT arrays FROM teacher_outputs").fetchall()
    return dict(json.loads(rows[0]["arrays"])) if rows else {}


def resumed_chunks(log: str, n_transfer: int, chunk_rows: int) -> dict[str, int]:
    """What a resumed pass's progress line says it kept ("resumed: k of m chunks kept"), and
    so how many transfer rows it computed (the labeled splits were finished before)."""
    found = re.findall(r"resumed: (\d+) of (\d+) chunks kept", log)
    if not found:
        return {"chunks_kept": 0}
    kept, total = (int(x) for x in found[-1])
    return {"chunks_kept": kept, "chunks": total, "rows_computed": n_transfer - kept * chunk_rows}


def _with_rate(res: dict[str, Any], rows: int) -> dict[str, Any]:
    res["rows"] = rows
    res["rows_per_s"] = round(rows / max(res["seconds"], 1e-9), 1)
    return res


def run_stages(
    work: Path, cfg: Path, n_transfer: int, rows_train: int, rows_eval: int, frac: float
) -> dict[str, Any]:
    """The commands in order (see the module docstring); each result has rows (what the
    command computes over) and rows/s."""
    from lelp_studio.teachers.staged import CHUNK_ROWS

    lelp = lelp_command()
    ws_a, ws_b = work / "ws_fresh", work / "ws_resumed"
    out: dict[str, Any] = {}

    def cmd(name: str, ws: Path, *extra: str, **kw: Any) -> dict[str, Any]:
        argv = [*lelp, name, str(cfg), "-w", str(ws), *extra]
        res = run_command(argv, work / f"{name}_{ws.name}_{len(out)}.log", **kw)
        print(json.dumps({name: res}), flush=True)
        return res

    rows_all = n_transfer + rows_train + rows_eval
    out["embed_fresh"] = _with_rate(cmd("embed", ws_a), rows_all)
    k = max(1, int(frac * math.ceil(n_transfer / CHUNK_ROWS)))
    killed = cmd("embed", ws_b, stop_when=lambda: _chunks_done(ws_b) >= k)
    killed["chunks_done_when_killed"] = _chunks_done(ws_b)
    out["embed_killed"] = killed
    resumed = _with_rate(cmd("embed", ws_b), rows_all)
    log = (work / f"embed_{ws_b.name}_{len(out)}.log").read_text(errors="replace")
    resumed |= resumed_chunks(log, n_transfer, CHUNK_ROWS)
    out["embed_resumed"] = resumed
    a, b = _stored(ws_a), _stored(ws_b)
    out["resume_equal"] = bool(a) and a == b
    fresh = out["embed_fresh"]
    out["resume_over_fresh"] = round(resumed["seconds"] / fresh["seconds"], 3)
    out["resume_over_fresh_cpu"] = round(resumed["cpu_seconds"] / fresh["cpu_seconds"], 3)
    shutil.rmtree(ws_b, ignore_errors=True)
    out["subclasses"] = _with_rate(cmd("subclasses", ws_a), rows_train)
    trained = rows_train + n_transfer
    out["distill_lelp"] = _with_rate(cmd("distill", ws_a, "--headroom-seeds", "0"), trained)
    kd = cmd("distill", ws_a, "--headroom-seeds", "0", "--set", "train.objective=kd")
    out["distill_kd"] = _with_rate(kd, trained)
    return out


# --------------------------------------------------------------------------- report


def judge(r: dict[str, Any]) -> list[str]:
    goals = []
    st = r.get("stages", {})
    worst = max(
        [v["peak_rss_mb"] for v in st.values() if isinstance(v, dict) and "peak_rss_mb" in v]
        + [r.get("load", {}).get("peak_rss_mb", 0)]
    )
    verdict = "met" if worst < GOAL_RSS_MB else "NOT met"
    goals.append(f"peak RSS of every stage < {GOAL_RSS_MB} MB: worst {worst} MB ({verdict})")
    failed = [
        k
        for k, v in st.items()
        if isinstance(v, dict) and v.get("returncode") not in (0, None) and not v.get("killed")
    ]
    goals.append("every command exits 0: " + ("yes" if not failed else f"NO ({failed})"))
    if "resume_equal" in st:
        goals.append(
            f"resumed extraction equals the fresh one (stored H and Z hashes): "
            f"{'yes' if st['resume_equal'] else 'NO'}; resumed / fresh: CPU time "
            f"x{st.get('resume_over_fresh_cpu', '?')}, wall time x{st['resume_over_fresh']} "
            f"(killed after {st['embed_killed'].get('chunks_done_when_killed')} chunks)"
        )
    return goals


def _row(name: str, v: dict[str, Any]) -> str:
    rows = f"{v['rows']:,}" if "rows" in v else ""
    return (
        f"| {name} | {v.get('returncode', '')} | {rows} | {v['seconds']} | "
        f"{v.get('cpu_seconds', '')} | {v.get('rows_per_s', '')} | {v['peak_rss_mb']} | "
        f"{v.get('peak_anon_mb', '')} | {v.get('peak_file_mb', '')} |"
    )


def to_markdown(r: dict[str, Any]) -> str:
    m, p = r["machine"], r["params"]
    lines = [
        "# A million-text transfer set (issue 15, item 2)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gb', '?')} GB; GPU: "
        f"{m['gpu'] or 'none'}. torch {m['torch']}, transformers {m.get('transformers', '?')}; "
        f"{m['date']}. Load average at start {m['load_average_start']}, at end "
        f"{r.get('load_average_end')}: the machine is shared with other work, so wall times "
        "and rates carry that load.",
        "",
        f"Data: {p['rows']:,} synthetic short transfer texts ({p['format']}), "
        f"{p['labeled']:,} labeled training rows, {p['eval_rows']:,} dev and test rows each. "
        f"Teacher: a random one-layer BERT classifier of width {p['hidden']} (kind hf, "
        "MiniLM's tokenizer), standing in for MiniLM. Student: the bag student, one epoch, "
        "batch 512. Each command is its own process.",
        "",
    ]
    loads = r.get("loads") or {}
    lm = r.get("loads_machine")
    if loads and lm:
        lines += [
            f"The loading section below was measured again, alone, on {lm['date']} (load "
            f"average at start {lm['load_average_start']}).",
            "",
        ]
    if loads:
        lines += [
            "Loading the dataset with its transfer file, by the file's format: as every "
            "command loads it (streamed, the library's load_dataset, which also drops repeats "
            "and builds the dataset) and, the baseline in the same run, the file read whole "
            "(read_table, or read and split for .txt) with its texts listed. Each in its own "
            "process (interpreter, pandas and pyarrow included).",
            "",
            "| format | file MB | streamed s | streamed peak RSS MB | whole s | whole peak RSS MB "
            "| streamed / whole RSS |",
            "|---|---|---|---|---|---|---|",
        ]
        for fmt, v in loads.items():
            s_, w_ = v.get("streamed", {}), v.get("whole", {})
            lines.append(
                f"| {fmt} | {v['file_mb']} | {s_.get('seconds', 'failed')} | "
                f"{s_.get('peak_rss_mb', '')} | {w_.get('seconds', 'failed')} | "
                f"{w_.get('peak_rss_mb', '')} | x{v.get('streamed_over_whole_rss', '')} |"
            )
        lines.append("")
    ld = r.get("load")
    if ld and "error" not in ld:
        lines += [
            f"Loading the dataset (library, own process): {ld['seconds']} s, peak RSS "
            f"{ld['peak_rss_mb']} MB; {ld['kept']:,} transfer rows kept of {ld['rows']:,} "
            f"({ld['transfer_info']}); the kept texts take {ld['transfer_texts_mb']} MB as "
            f"Python strings (mean {ld['mean_chars']} characters).",
            "",
        ]
    st = r.get("stages", {})
    lines += [
        "| stage | exit | rows | wall s | CPU s | rows/s (wall) | peak RSS MB | peak anon MB "
        "| peak file MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "embed_fresh": "lelp embed (fresh)",
        "embed_killed": "lelp embed, killed mid-way",
        "embed_resumed": "lelp embed (resumed)",
        "subclasses": "lelp subclasses",
        "distill_lelp": "lelp distill, LELP (one epoch)",
        "distill_kd": "lelp distill, KD (one epoch)",
    }
    lines += [_row(label, st[k]) for k, label in names.items() if k in st]
    lines.append("")
    res = st.get("embed_resumed", {})
    if res.get("rows_computed"):
        lines += [
            f"The resumed pass kept {res['chunks_kept']} of the transfer split's "
            f"{res['chunks']} chunks (and every labeled split's) and computed "
            f"{res['rows_computed']:,} rows; its rows/s counts all rows.",
            "",
        ]
    rt = r.get("rates")
    if rt and "error" not in rt:
        lines += [
            f"MiniLM's own rate on {rt['minilm']['n']:,} of these texts ({rt['device']}, "
            f"{rt['precision']}, the library's extract): {rt['minilm']['per_s']} texts/s; the "
            f"stand-in teacher on the same texts: {rt['stand-in']['per_s']} texts/s (MiniLM / "
            f"stand-in x{rt['minilm_over_stand_in']}). At MiniLM's rate the teacher pass over "
            f"{p['rows']:,} texts would take about "
            f"{p['rows'] / rt['minilm']['per_s'] / 60:.0f} min here.",
            "",
        ]
    lines += ["## Goals", ""] + [f"- {g}" for g in r.get("goals", [])] + [""]
    lines += ["## Notes", ""] + [f"- {x}" for x in NOTES] + [""]
    return "\n".join(lines)


NOTES = [
    "Peak RSS is ru_maxrss of the command's process: it counts memory-mapped file pages "
    "(the float16 H files, about 0.77 GB per million rows at width 384) beside the process's "
    "own memory. Peak anon (its heap, tensors, in-memory arrays) and peak file (mapped files "
    "and libraries) are sampled every 0.25 s, so they can miss a short spike.",
    "The teacher pass writes H chunk by chunk (32,768 rows) into float16 files with a "
    "manifest of finished chunks (core/teachers/staged.py); the killed pass left its "
    "finished chunks in the workspace's staging folder, and the next pass verified them "
    "(sha256) and computed only the rest. 'resumed / fresh' compares the second pass's CPU "
    "and wall time with the fresh pass's, measured in the same run.",
    "CPU s is the command's user + system time (wait4). The machine is shared: wall times "
    "swing with other work's load (an earlier run of this benchmark, at a load average of "
    "11, took 58 min for the fresh pass), CPU time much less so.",
    "What stays in memory at a million rows: the transfer texts as Python strings (see "
    "'Loading'), the student's token ids and masks for labeled + transfer rows, the "
    "teacher's logits (n x C float32) and, for LELP, the subclass targets (n x sum S_c "
    "float16, computed in blocks of 65,536 rows); H stays on disk, memory-mapped.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--rows", type=int, default=1_000_000, help="transfer texts")
    ap.add_argument("--labeled", type=int, default=20_000, help="labeled training rows")
    ap.add_argument("--eval-rows", type=int, default=2_000, help="dev and test rows each")
    ap.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl", "txt"])
    ap.add_argument(
        "--load-formats",
        default="parquet,csv,jsonl,txt",
        help="transfer-file formats whose loading is measured (streamed and whole)",
    )
    ap.add_argument("--hidden", type=int, default=384, help="the stand-in teacher's width")
    ap.add_argument("--minilm-texts", type=int, default=20_000)
    ap.add_argument(
        "--interrupt-at",
        type=float,
        default=0.5,
        help="share of the transfer chunks done when the second pass is killed",
    )
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temp one)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument(
        "--loads-only",
        action="store_true",
        help="measure only the loading, merged into <out>/transfer_scale.json (its other "
        "sections and their machine and date stay)",
    )
    ap.add_argument("--render", action="store_true", help="rewrite the .md from the .json")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "rates":
            res = worker_rates(rest[0], int(rest[1]))
        else:
            res = (worker_load if kind == "load" else worker_load_whole)(rest[0])
        print(json.dumps(res))
        return 0

    old_json = args.out / "transfer_scale.json"
    if args.render:
        r = json.loads(old_json.read_text())
        (args.out / "transfer_scale.md").write_text(to_markdown(r))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.speed import machine_info

    work = args.work or Path(tempfile.mkdtemp(prefix="lelp-transfer-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    r: dict[str, Any] = {"machine": machine_info(), "params": {
        "rows": args.rows, "labeled": args.labeled, "eval_rows": args.eval_rows,
        "format": args.format, "hidden": args.hidden, "minilm_texts": args.minilm_texts,
        "interrupt_at": args.interrupt_at,
    }}  # fmt: skip
    try:
        t0 = time.perf_counter()
        data = work / "data"
        transfer = make_data(data, args.rows, args.labeled, args.eval_rows, args.format)
        teacher = make_tiny_teacher(work / "teacher", hidden=args.hidden)
        cfg = write_config(data, transfer, teacher)
        r["params"]["data_seconds"] = round(time.perf_counter() - t0, 1)
        formats = [f for f in args.load_formats.split(",") if f]
        r["loads"] = bench_loads(data, teacher, transfer, formats, args.rows)
        r["load"] = r["loads"].get(args.format, {}).get("streamed", {})
        if args.loads_only:  # the other sections as they were, with their machine and date
            loads = {k: r[k] for k in ("loads", "load")}
            r = json.loads(old_json.read_text()) | loads | {"loads_machine": r["machine"]}
            return _write(args.out, r)
        kept = r["load"].get("kept", args.rows)
        r["stages"] = run_stages(
            work, cfg, kept, args.labeled, 2 * args.eval_rows, args.interrupt_at
        )
        if args.minilm_texts:
            r["rates"] = _in_worker(["rates", str(teacher), str(args.minilm_texts)])
            print(json.dumps({"rates": r["rates"]}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    r["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return _write(args.out, r)


def _write(out: Path, r: dict[str, Any]) -> int:
    r["goals"] = judge(r)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_scale.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / "transfer_scale.md").write_text(to_markdown(r))
    print("\n".join(r["goals"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
