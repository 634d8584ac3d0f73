"""The `lelp` command: thin over core, prints artifacts, exits 2 with one line on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lelp_studio.cli import app

runner = CliRunner()
DIGITS = ["--set", "dataset.source=digits-bin", "--set", "teacher.kind=digits-mlp"]


def test_distill_prints_student_and_teacher_scores(tmp_path: Path) -> None:
    res = runner.invoke(app, ["distill", "examples/digits-kd.yaml", "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "teacher  accuracy" in res.output
    assert "agreement" in res.output and "student saved in" in res.output
    # It names the split that chose, and that test was scored once.
    assert "selection split: dev (144 rows, a stratified 10% holdout of train" in res.output
    assert "The test split was scored once, after training." in res.output
    assert "does distillation pay here? Teacher" in res.output
    again = runner.invoke(
        app, ["distill", "examples/digits-kd.yaml", "-w", str(tmp_path), "--headroom-seeds", "3"]
    )
    assert again.exit_code == 0 and "does distillation pay here? (cached)" in again.output
    skip = runner.invoke(
        app, ["distill", "examples/digits-kd.yaml", "-w", str(tmp_path), "--headroom-seeds", "0"]
    )
    assert skip.exit_code == 0 and "does distillation pay" not in skip.output
    # Large data: by default only a cached answer, never three extra students unasked.
    import lelp_studio.headroom

    monkey = pytest.MonkeyPatch()
    monkey.setattr(lelp_studio.headroom, "AUTO_MAX_ROWS", 100)
    big = runner.invoke(
        app, ["distill", "examples/digits-kd.yaml", "-w", str(tmp_path), "--set", "train.tau=3"]
    )
    monkey.undo()
    assert big.exit_code == 0 and "(cached)" in big.output  # same budget: the answer above
    fresh = tmp_path / "fresh"
    monkey.setattr(lelp_studio.headroom, "AUTO_MAX_ROWS", 100)
    none = runner.invoke(app, ["distill", "examples/digits-kd.yaml", "-w", str(fresh)])
    monkey.undo()
    assert none.exit_code == 0 and "not measured (1,293 training rows)" in none.output


def test_embed_then_cache_hit(tmp_path: Path) -> None:
    args = ["embed", *DIGITS, "-w", str(tmp_path)]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0 and "(computed)" in first.output
    assert second.exit_code == 0 and "(cache hit)" in second.output
    assert "teacher accuracy" in second.output


def test_subclasses_reports_and_saves_spec(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "subclasses",
            *DIGITS,
            "--set",
            "subclasses.n_subclasses=3",
            "-w",
            str(tmp_path),
            "--save-spec",
            "three",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "sizes per class [3, 3]" in res.output
    assert "recovery of 'digit'" in res.output
    assert "saved spec 'three'" in res.output
    again = runner.invoke(
        app,
        [
            "distill",
            "--spec",
            "three",
            "--set",
            "student.kind=mlp",
            "--set",
            "train.epochs=2",
            "-w",
            str(tmp_path),
        ],
    )
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "--set", "train.temperature=4"], "unknown key 'train.temperature'"),
        (["distill", "nope.yaml"], "no such config file"),
        (["embed", "--set", "dataset.source=/no/such/file.csv"], "file.csv"),
        (["distill", "--spec", "missing"], "no saved spec named 'missing'"),
        (["subclasses", "--spec-name-typo"], "No such option"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    res = runner.invoke(app, [*args, "-w", str(tmp_path)])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_show_config_is_valid_yaml_round_trip(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["show-config", "examples/text-demo-lelp.yaml", "--set", "train.tau=4"]
    )
    assert res.exit_code == 0
    p = tmp_path / "c.yaml"
    p.write_text(res.output)
    from lelp_studio.config import load_config

    assert load_config(p).train.tau == 4.0


@pytest.mark.slow
def test_documented_text_demo_config_under_five_minutes(shared_workspace) -> None:  # type: ignore[no-untyped-def]
    """Issue acceptance: the README's example config completes on CPU and prints scores."""
    import time

    t0 = time.perf_counter()
    res = runner.invoke(
        app, ["distill", "examples/text-demo-lelp.yaml", "-w", str(shared_workspace.root)]
    )
    assert res.exit_code == 0, res.output
    assert "teacher  accuracy" in res.output and "agreement" in res.output
    assert time.perf_counter() - t0 < 300


def test_runs_folds_seeds_ranks_on_selection_and_saves_the_best(tmp_path: Path) -> None:
    from lelp_studio import pipeline
    from lelp_studio.config import load_config
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)
    base = ["dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp"]
    for tau in (1, 4):
        for seed in (0, 1):
            cfg = load_config(
                None, [*base, "train.epochs=2", "train.objective=kd", f"train.tau={tau}",
                       f"train.seed={seed}"],
            )  # fmt: skip
            pipeline.run_distill(cfg, ws)
    res = runner.invoke(app, ["runs", "-w", str(tmp_path), "--save-best", "best-kd"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "selection (ranks)" in lines[0] and "test (shown only)" in lines[0]
    assert sum(" kd " in f" {ln} " for ln in lines[1:3]) == 2  # two settings, seeds folded
    assert "best on the selection split: rank 1 (2 seeds)" in res.output
    spec = ws.load_spec("best-kd")
    assert spec["train"]["objective"] == "kd" and "seed" not in spec["train"]
    again = runner.invoke(app, ["distill", "--spec", "best-kd", "-w", str(tmp_path),
                                "--headroom-seeds", "0"])  # fmt: skip
    assert again.exit_code == 0, again.output
    bad = runner.invoke(app, ["runs", "-w", str(tmp_path), "--sweep", "sweep-nope"])
    assert bad.exit_code == 2 and "has no finished runs" in bad.output
    md = runner.invoke(app, ["runs", "-w", str(tmp_path), "--format", "markdown",
                             "--objective", "kd", "--dataset", "digits-bin"])  # fmt: skip
    assert md.exit_code == 0 and md.output.startswith("| objective") and "sel_mean" in md.output
    js = runner.invoke(app, ["runs", "-w", str(tmp_path), "--format", "json"])
    rows = __import__("json").loads(js.output)
    assert sorted(r["n"] for r in rows) == [2, 3]  # the spec run joined its setting
    none = runner.invoke(app, ["runs", "-w", str(tmp_path), "--format", "csv", "--teacher", "hf"])
    assert none.exit_code == 0 and none.output.strip() == ""
    wrong = runner.invoke(app, ["runs", "-w", str(tmp_path), "--format", "xml"])
    assert wrong.exit_code == 2 and "table, csv, json, markdown" in wrong.output


def test_bench_outside_a_checkout_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lelp_studio.cli import bench

    unknown = runner.invoke(app, ["bench", "nope"])
    assert unknown.exit_code == 2 and "choose quality or speed" in unknown.output
    monkeypatch.setattr(bench, "CHECKOUT", tmp_path)  # an installed lelp: no bench/ beside it
    res = runner.invoke(app, ["bench", "speed"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().count("\n") == 0
    assert res.output.startswith("error: `lelp bench` runs the scripts in bench/ of a lelp-studio")


def test_cli_and_job_process_entry_import_one_way() -> None:
    """The CLI imports the jobs package; the jobs package (and the job process's entry point,
    ``python -m lelp_studio.jobs``) never imports the CLI, Typer or rich."""
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        "sys.argv = ['x', 'worker', '--help']\n"
        "try:\n    runpy.run_module('lelp_studio.jobs', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = [m for m in sys.modules if m.startswith(('lelp_studio.cli', 'typer', 'rich'))]\n"
        "print('BAD', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "BAD []" in out.stdout, out.stdout
