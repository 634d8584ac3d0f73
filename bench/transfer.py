"""The transfer-data benchmark (issue 15 item 5): does distillation pay when a strong teacher
labels a large unlabeled pool?

Data: Sentiment140 from ``../shared/data/sentiment140``. A stratified seeded subset of train
(``--labeled``, default 5,000 tweets) keeps its labels; the rest of train (at least 80,000
tweets) becomes unlabeled transfer data (``dataset.transfer``). The selection split is a
holdout of the labeled subset (``dataset.selection_fraction``); the 9,932-tweet dev split is
reported as the test set and the official 359-tweet test beside it.

Teacher: MiniLM-L6 fine-tuned end to end on the labeled subset (``teacher.mode: finetune``).
Students: the LELP.md bag student and a small transformer, each trained with (a) hard labels
on the labeled rows, (b) KD and (c) LELP on labeled plus transfer rows. Every choice (hard's
epochs, KD's tau/alpha, LELP's S/beta) is the arg-max of mean selection accuracy over an
equal-size grid; test never chooses. The transformer tunes its hard-label baseline on the
same grid (labeled rows only: cheap) and reuses the bag student's KD and LELP picks (a run
over the transfer rows costs minutes), which if anything favours the baseline.

    python bench/transfer.py                      # the full run (see below)
    python bench/transfer.py --quick --out /tmp/t # text demo, tiny grid (the test)

On this project's 2-core CPU the full run took 68 min with the teacher cached (bag student
4 min, transformer 64 min: 7.5 min per KD or LELP run); the fine-tune and teacher pass add
about 23 min the first time. Writes ``<out>/transfer.json`` and ``<out>/transfer.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(REPO))

from bench.quality import machine_info  # noqa: E402
from lelp_studio.config import (  # noqa: E402
    DatasetSpec,
    RunConfig,
    StudentSpec,
    SubclassSpec,
    TeacherSpec,
    TrainSpec,
)

#: Target of the issue: distilled students close at least half of the hard-to-teacher gap.
HALF = 0.5


@dataclass(frozen=True)
class Arm:
    """One grid point: an objective and its overrides (``epochs`` for the hard student)."""

    family: str  # hard, kd, lelp
    label: str
    tau: float = 1.0
    alpha: float = 0.0
    epochs: int | None = None
    n_subclasses: int = 4
    beta: float = 1.0


def grids(quick: bool) -> dict[str, list[Arm]]:
    """Equal-size grids per method (issue 13: equal tuning budgets)."""
    if quick:
        return {
            "hard": [
                Arm("hard", "hard epochs=4", epochs=4),
                Arm("hard", "hard epochs=8", epochs=8),
            ],
            "kd": [Arm("kd", "kd tau=1", tau=1.0), Arm("kd", "kd tau=4", tau=4.0)],
            "lelp": [Arm("lelp", "lelp S=2", n_subclasses=2), Arm("lelp", "lelp S=4")],
        }
    return {
        # The hard student sees only the labeled rows: its budget is the number of epochs.
        "hard": [Arm("hard", f"hard epochs={e}", epochs=e) for e in (4, 8, 16, 32)],
        "kd": [
            Arm("kd", f"kd tau={t:g} alpha={a:g}", tau=t, alpha=a)
            for t in (1.0, 4.0)
            for a in (0.0, 0.5)
        ],
        "lelp": [
            Arm("lelp", f"lelp S={s} beta={b:g}", n_subclasses=s, beta=b)
            for s in (2, 4)
            for b in (1.0, 2.0)
        ],
    }


# --------------------------------------------------------------------------- data


def make_data(out: Path, labeled: int, seed: int, quick: bool) -> tuple[Path, Path, Path | None]:
    """Write the benchmark's split folder and transfer file under ``out``.

    Returns (folder with train.csv + test.csv, transfer.csv, official test csv or None)."""
    import pandas as pd

    from lelp_studio.data import shared_data_root

    folder = out / ("s140-quick" if quick else f"s140-{labeled}")
    folder.mkdir(parents=True, exist_ok=True)
    if quick:
        from lelp_studio.data.paths import sample_dir

        demo = sample_dir() / "text_demo"
        src = pd.concat(
            [pd.read_csv(demo / f, keep_default_na=False) for f in ("train.csv", "test.csv")]
        )[["text", "label"]]
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(src))
        test = src.iloc[idx[: len(src) // 5]]
        rest = src.iloc[idx[len(src) // 5 :]]
        official = None
    else:
        root = shared_data_root()
        d = Path(str(root)) / "sentiment140"
        rest = pd.read_csv(d / "train.csv", keep_default_na=False)[["text", "label"]]
        test = pd.read_csv(d / "dev.csv", keep_default_na=False)[["text", "label"]]
        official = pd.read_csv(d / "test.csv", keep_default_na=False)[["text", "label"]]
    from sklearn.model_selection import train_test_split

    lab, unl = train_test_split(
        rest, train_size=min(labeled, len(rest) // 2), stratify=rest["label"], random_state=seed
    )
    lab.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    transfer = out / f"{folder.name}-transfer.csv"
    unl[["text"]].to_csv(transfer, index=False)
    off = None
    if official is not None:
        off = out / "s140-official-test.csv"
        official.to_csv(off, index=False)
    (folder / "labels.json").write_text(json.dumps({"0": "negative", "1": "positive"}))
    return folder, transfer, off


def base_config(folder: Path, transfer: Path, quick: bool, device: str) -> RunConfig:
    """Fine-tuned MiniLM teacher, the LELP.md bag student; lengths fit tweets."""
    ds = DatasetSpec(source=str(folder), transfer=str(transfer))
    t = TeacherSpec(
        kind="minilm", mode="finetune", max_length=64, epochs=1 if quick else 3, lr=5e-5,
        batch_size=64,
    )  # fmt: skip
    s = StudentSpec(kind="bag", embed_dim=64, hidden=64, layers=2, max_length=64)
    tr = TrainSpec(epochs=2 if quick else 4, lr=3e-3, batch_size=128, alpha=0.0, device=device)
    return RunConfig(name="bench-transfer", dataset=ds, teacher=t, student=s, train=tr)


TRANSFORMER = StudentSpec(kind="transformer", embed_dim=128, layers=2, heads=4, max_length=64)


# --------------------------------------------------------------------------- running


def arm_config(base: RunConfig, arm: Arm, seed: int) -> RunConfig:
    """``base`` with ``arm``'s objective and settings at ``seed``."""
    upd: dict[str, Any] = {"objective": arm.family, "tau": arm.tau, "alpha": arm.alpha}
    upd["seed"] = seed
    if arm.epochs is not None:
        upd["epochs"] = arm.epochs
    train = TrainSpec.model_validate({**base.train.model_dump(), **upd})
    sub = (
        SubclassSpec(method="lelp", n_subclasses=arm.n_subclasses, beta=arm.beta)
        if arm.family == "lelp"
        else SubclassSpec()
    )
    return base.model_copy(update={"train": train, "subclasses": sub})


def official_inputs(prep: Any, path: Path | None) -> tuple[dict[str, Any] | None, np.ndarray]:
    """The official test tweets encoded for the student, and their labels."""
    if path is None:
        return None, np.zeros(0, dtype=np.int64)
    import pandas as pd
    import torch

    from lelp_studio.students import encode_inputs
    from lelp_studio.teachers import load_tokenizer
    from lelp_studio.types import Split

    df = pd.read_csv(path, keep_default_na=False)
    y = df["label"].to_numpy(dtype=np.int64)
    split = Split(y=y, texts=df["text"].astype(str).tolist())
    tok = load_tokenizer(prep.cfg.teacher)
    with torch.no_grad():
        inputs = encode_inputs(split, tokenizer=tok, max_length=prep.cfg.student.max_length)
    return inputs, y


def run_arm(
    prep: Any, base: RunConfig, arm: Arm, seeds: list[int], off: Any, log: Any
) -> dict[str, Any]:
    """Train ``arm`` once per seed; selection, test and official-test accuracy per seed."""
    from lelp_studio.pipeline import train_student
    from lelp_studio.predict import class_logits

    per: dict[str, list[float]] = {"sel": [], "test": [], "official": [], "agree": [], "s": []}
    rows_used: dict[str, Any] = {}
    for seed in seeds:
        cfg = arm_config(base, arm, seed)
        t = time.perf_counter()
        run = train_student(prep, cfg)
        per["s"].append(time.perf_counter() - t)
        per["sel"].append(float(run.select_scores["accuracy"]))
        per["test"].append(float(run.scores["accuracy"]))
        per["agree"].append(float(run.scores["agreement"]))
        if off[0] is not None:
            # Through the objective, as every split is scored: a LELP student's raw outputs
            # are C x S pseudo-subclass logits, which class_logits folds into C classes.
            assert run.method is not None
            logits = class_logits(run.method, run.student, off[0]).numpy()
            per["official"].append(float(100.0 * np.mean(logits.argmax(1) == off[1])))
        rows_used = dict(run.data)
    row: dict[str, Any] = {"family": arm.family, "setting": arm.label, "seeds": seeds}
    for k, v in per.items():
        row[f"{k}_values"] = v
        row[f"{k}_mean"] = float(np.mean(v)) if v else None
        row[f"{k}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    row["rows_used"] = rows_used
    log(
        f"  {arm.label:<26} sel {row['sel_mean']:6.2f}  test {row['test_mean']:6.2f} ± "
        f"{row['test_std']:4.2f}  ({row['s_mean']:.0f} s/run)"
    )
    return row


def pick(rows: list[dict[str, Any]], family: str) -> dict[str, Any]:
    """The ``family`` row with the best mean selection accuracy (test never chooses)."""
    return max((r for r in rows if r["family"] == family), key=lambda r: r["sel_mean"])


def gap_closed(row: dict[str, Any], hard: dict[str, Any], teacher: float, key: str) -> float:
    """Share of the hard-student-to-teacher gap ``row`` closes on split ``key``."""
    gap = teacher - hard[f"{key}_mean"]
    if gap < 1e-9:  # the hard student matches or beats the teacher: no gap to close
        return float("nan")
    return (row[f"{key}_mean"] - hard[f"{key}_mean"]) / gap


def verdict(rows: dict[str, dict[str, Any]], teacher: float) -> dict[str, Any]:
    """The issue's two targets on the test split, as plain facts."""
    hard, kd, lelp = rows["hard"], rows["kd"], rows["lelp"]
    ck, cl = gap_closed(kd, hard, teacher, "test"), gap_closed(lelp, hard, teacher, "test")
    diff = lelp["test_mean"] - kd["test_mean"]
    sd = max(lelp["test_std"], kd["test_std"])
    return {
        "kd_closed": ck,
        "lelp_closed": cl,
        "half_closed": bool(ck >= HALF and cl >= HALF),
        "lelp_minus_kd": diff,
        "lelp_beats_kd_by_std": bool(diff > sd),
    }


def bench_student(
    prep: Any, base: RunConfig, grid: dict[str, list[Arm]], seeds: list[int], off: Any, log: Any,
    picks: dict[str, Arm] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every grid arm at every seed, and each method's pick on the selection split. With
    ``picks`` (arms chosen with another student), KD and LELP run only their pick; the
    hard-label baseline still runs its whole grid."""
    rows: list[dict[str, Any]] = []
    for fam, arms in grid.items():
        for arm in [picks[fam]] if picks and fam != "hard" else arms:
            rows.append(run_arm(prep, base, arm, seeds, off, log))
    best = {fam: pick(rows, fam) for fam in grid}
    return {"rows": rows, "picked": best}


def teacher_scores(prep: Any, off: Path | None) -> dict[str, Any]:
    """The teacher's accuracy on the selection, test and (when given) official test split."""
    from lelp_studio import metrics as M
    from lelp_studio.data import SELECT

    out, ds = prep.out, prep.dataset
    res = {
        "select": M.accuracy(np.asarray(out.Z[SELECT]), ds.splits[SELECT].y),
        "test": M.accuracy(np.asarray(out.Z[prep.eval_split]), ds.splits[prep.eval_split].y),
        "compute_s": out.meta.get("seconds"),
        "cache_hit": prep.cache_hit,
    }
    if off is not None:
        res["official"] = teacher_official(prep, off)
    return res


def teacher_official(prep: Any, path: Path) -> float:
    """The fine-tuned teacher's accuracy on the official test: its saved encoder, mean
    pooling and cached head (Z = H W^T + b, as the extraction computes it)."""
    import pandas as pd
    import torch

    from lelp_studio.teachers import load_teacher_encoder, load_tokenizer
    from lelp_studio.teachers.extraction import mean_pool

    df = pd.read_csv(path, keep_default_na=False)
    spec = prep.cfg.teacher
    enc = load_teacher_encoder(spec, prep.encoder_dir).eval()
    tok = load_tokenizer(spec)
    batch = tok(
        df["text"].astype(str).tolist(), padding=True, truncation=True,
        max_length=spec.max_length, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        h = mean_pool(enc(**batch).last_hidden_state, batch["attention_mask"]).numpy()
    z = h @ np.asarray(prep.out.W, dtype=np.float32).T + np.asarray(prep.out.b)
    return float(100.0 * np.mean(z.argmax(1) == df["label"].to_numpy()))


def _every(seconds: float, log: Any) -> Any:
    """A progress callback that logs the stage at most every ``seconds`` (a long teacher
    pass is then seen moving in the run's log)."""
    last = [0.0]

    def progress(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds or done >= total:
            last[0] = now
            log(f"  {time.strftime('%H:%M:%S')} {stage} {done}/{total}")

    return progress


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="text demo, tiny grid (the test)")
    ap.add_argument("--labeled", type=int, default=5000, help="labeled subset size")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--students", default="bag,transformer")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work", type=Path, default=None, help="data + workspace folder")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from lelp_studio.pipeline import prepare
    from lelp_studio.store import Workspace

    args = parse_args(argv)
    work = args.work or (args.out / ".transfer-work")
    work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    folder, transfer, off_path = make_data(work, args.labeled, 0, args.quick)
    base = base_config(folder, transfer, args.quick, args.device)
    ws = Workspace(work / "workspace")
    t = time.perf_counter()
    prep = prepare(base, ws, progress=_every(30.0, log))
    teacher = teacher_scores(prep, off_path)
    teacher["prepare_s"] = time.perf_counter() - t
    info = prep.dataset.transfer_info
    log(f"teacher: {teacher} transfer: {info} timings {prep.timings}")
    off = official_inputs(prep, off_path)
    grid = grids(args.quick)
    seeds = list(range(1 if args.quick else args.seeds))
    res: dict[str, Any] = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.get_num_threads()),
        "config": base.model_dump(mode="json"),
        "n_labeled": len(prep.dataset.splits["train"]),
        "n_select": len(prep.dataset.splits["dev"]),
        "n_test": len(prep.dataset.splits[prep.eval_split]),
        "n_official": len(off[1]),
        "transfer_info": dict(info or {}),
        "teacher": teacher,
        "students": {},
    }
    picks: dict[str, Arm] | None = None
    for kind in args.students.split(","):
        ts = time.perf_counter()
        b = base if kind == "bag" else base.model_copy(update={"student": TRANSFORMER})
        p = prep if kind == "bag" else prepare(b, ws)
        o = off if kind == "bag" else official_inputs(p, off_path)
        if kind != "bag" and p.cfg.student.kind != "transformer":
            raise SystemExit("transformer prepare failed")
        log(f"student {kind}:")
        r = bench_student(p, b, grid, seeds, o, log, picks)
        if kind == "bag":  # the transformer reuses the bag student's KD/LELP picks (cost)
            picks = {
                fam: next(a for a in grid[fam] if a.label == row["setting"])
                for fam, row in r["picked"].items()
            }
        r["verdict"] = verdict(r["picked"], teacher["test"])
        r["wall_s"] = time.perf_counter() - ts
        res["students"][kind] = r
        log(f"  verdict: {r['verdict']}")
        res["wall_s"] = time.perf_counter() - t0
        write(res, args.out)  # after each student: an interrupted run keeps what it finished
    return res


def _pm(r: dict[str, Any], key: str) -> str:
    m, s = r.get(f"{key}_mean"), r.get(f"{key}_std")
    return "" if m is None else f"{m:.2f} ± {s:.2f}"


NAMES = {"hard": "hard labels (labeled rows only)", "kd": "KD (labeled + transfer)",
         "lelp": "LELP (labeled + transfer)"}  # fmt: skip


def teacher_cost(t: dict[str, Any]) -> str:
    """What the teacher cost: this run's time, or, on a workspace cache hit, the time the
    cached fine-tune and pass took when first computed (a hit alone says nothing of cost)."""
    here = f"{t.get('prepare_s', 0) / 60:.1f} min"
    if not t.get("cache_hit"):
        return f"Fine-tune plus the pass over all rows: {here}."
    first = t.get("compute_s")
    when = f"{first / 60:.1f} min when first computed" if first else "an earlier run"
    return f"Teacher outputs from the workspace cache ({here} here; fine-tune plus pass: {when})."


def render_md(res: dict[str, Any]) -> str:
    """The report: data, teacher, each student's picked rows, the gap closed, the verdict."""
    m, t, info = res["machine"], res["teacher"], res["transfer_info"]
    lines = [
        "# Transfer-data benchmark: a fine-tuned teacher labels unlabeled tweets (issue 15)",
        "",
        f"Generated by `bench/transfer.py` on {res['generated']} ({res['wall_s'] / 60:.1f} min "
        f"wall). Machine: {m.get('cpu', m.get('cpu_model', '?'))} ({m.get('cpu_count')} cores, "
        f"torch {m.get('torch', '?')}, {m.get('torch_threads')} torch thread(s), "
        f"{m.get('device', 'cpu')}).",
        "",
        f"**Data**: Sentiment140. Labeled: {res['n_labeled']:,} training tweets + "
        f"{res['n_select']:,} held out as the selection split (a stratified seeded subset of "
        f"train); transfer: {info.get('kept', info)} unlabeled tweets (the rest of train, "
        f"labels removed; dropped: {info.get('dropped', {})}); test: the {res['n_test']:,}-tweet "
        f"dev split; official test: {res['n_official']} hand-labelled tweets.",
        "",
        f"**Teacher**: MiniLM-L6 fine-tuned end to end on the labeled rows (3 epochs, lr 5e-5, "
        f"batch 64, 64 tokens): selection {t['select']:.2f}, test {t['test']:.2f}, official "
        f"test {t.get('official') or float('nan'):.2f}. {teacher_cost(t)}",
        "",
        "**Protocol**: every pick (hard's epochs, KD's tau and alpha, LELP's S and beta; four "
        "settings each) is the best mean selection accuracy; test never chooses. The "
        "transformer student tunes its hard-label baseline on the same grid and reuses the "
        "bag student's KD and LELP picks (cost), which if anything favours the baseline. "
        "Mean ± std over "
        f"{len(next(iter(res['students'].values()))['rows'][0]['seeds'])} seeds. Gap closed = "
        "(student - hard) / (teacher - hard) on test.",
    ]
    for kind, r in res["students"].items():
        v = r["verdict"]
        lines += [
            "",
            f"## {kind} student",
            "",
            "| method | setting (picked) | selection | test | official test | agreement | "
            "gap closed | rows (labeled + transfer) | s/run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        hard = r["picked"]["hard"]
        for fam in ("hard", "kd", "lelp"):
            row = r["picked"][fam]
            closed = "" if fam == "hard" else f"{gap_closed(row, hard, t['test'], 'test'):.0%}"
            used = row.get("rows_used", {})
            lines.append(
                f"| {NAMES[fam]} | {row['setting']} | {_pm(row, 'sel')} | {_pm(row, 'test')} | "
                f"{_pm(row, 'official')} | {_pm(row, 'agree')} | {closed} | "
                f"{used.get('labeled', '?')} + {used.get('transfer', '?')} | "
                f"{row['s_mean']:.0f} |"
            )
        lines += [
            "",
            f"- Half the gap closed by both KD and LELP: **{'yes' if v['half_closed'] else 'no'}** "
            f"(KD {v['kd_closed']:.0%}, LELP {v['lelp_closed']:.0%}).",
            f"- LELP beats KD by more than one std on test: "
            f"**{'yes' if v['lelp_beats_kd_by_std'] else 'no'}** (LELP - KD = "
            f"{v['lelp_minus_kd']:+.2f} points).",
        ]
        if len(r["rows"]) > 3:
            lines += ["", "Every grid row:", "", "| setting | selection | test |", "|---|---|---|"]
            lines += [f"| {x['setting']} | {_pm(x, 'sel')} | {_pm(x, 'test')} |" for x in r["rows"]]
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any], out: Path) -> None:
    """``transfer.json`` and ``transfer.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "transfer.md").write_text(render_md(res))


if __name__ == "__main__":
    main()
