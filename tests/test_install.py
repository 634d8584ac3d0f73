"""The library installs as a wheel and runs outside the checkout (issue "One house", point 1):
one import name (``lelp_studio``), demo data shipped as package data, no repo-relative paths.

The wheel is built without build isolation (no network here) and installed with ``--target``
into a temporary folder that comes first on ``PYTHONPATH``; its dependencies come from the
test environment. Every command runs from a folder outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Build and install the wheel once; the environment that runs the installed copy."""
    root = tmp_path_factory.mktemp("install")
    wheels, site = root / "wheels", root / "site"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(wheels), str(REPO)], check=True, cwd=root)
    (wheel,) = wheels.glob("lelp_studio-*.whl")
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True, cwd=root)
    return {**os.environ, "PYTHONPATH": str(site), "LELP_SHARED_DATA": str(root / "none")}


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_installed_copy_is_the_one_loaded_and_ships_the_demo(
    installed: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "import lelp_studio, sys\n"
        "from lelp_studio.data import load_demo\n"
        "ds = load_demo('text-demo')\n"
        "print(lelp_studio.__file__)\n"
        "print(len(ds.splits['train'].y), len(ds.label_names))\n"
        "print(sorted(m for m in sys.modules if m == 'core' or m.startswith('core.')))\n"
    )
    out = _run(installed, tmp_path, "-c", code)
    assert out.returncode == 0, out.stderr
    where, sizes, core_mods = out.stdout.strip().splitlines()
    assert where.startswith(installed["PYTHONPATH"]) and str(REPO) not in where
    n_train, n_classes = map(int, sizes.split())
    assert n_train > 100 and n_classes >= 2
    assert core_mods == "[]"  # only one name is ever loaded


@pytest.mark.slow
def test_installed_cli_distills_the_digits_example(
    installed: dict[str, str], tmp_path: Path
) -> None:
    config = REPO / "examples" / "digits-kd.yaml"
    ws = tmp_path / "ws"
    out = _run(
        installed, tmp_path, "-m", "lelp_studio.cli", "distill", str(config),
        "--workspace", str(ws), "--set", "train.epochs=2", "--headroom-seeds", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "student" in out.stdout and "teacher" in out.stdout
    assert any((ws / "runs").iterdir())


@pytest.mark.slow
def test_installed_cli_distills_the_text_demo(installed: dict[str, str], tmp_path: Path) -> None:
    """The text demo's data come from the installed package, its teacher from the MiniLM
    package: nothing of the checkout is read."""
    config = REPO / "examples" / "text-demo-lelp.yaml"
    out = _run(
        installed, tmp_path, "-m", "lelp_studio.cli", "distill", str(config),
        "--workspace", str(tmp_path / "ws"), "--set", "train.epochs=1", "--headroom-seeds", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "teacher  accuracy" in out.stdout and "student  accuracy" in out.stdout


def test_installed_cli_names_missing_shared_data_in_one_line(
    installed: dict[str, str], tmp_path: Path
) -> None:
    out = _run(
        installed, tmp_path, "-m", "lelp_studio.cli", "distill",
        "--set", "dataset.source=shared:sst2", "--workspace", str(tmp_path / "ws"),
    )  # fmt: skip
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "LELP_SHARED_DATA" in lines[0], out.stderr
