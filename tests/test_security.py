"""Security (issue 8): the server stays local, nothing unpickles user files, remote code stays
off unless asked for, names cannot escape the workspace, and no token reaches disk or logs."""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lelp_studio.cli import app
from lelp_studio.config import RunConfig, TeacherSpec
from lelp_studio.store import Workspace, WorkspaceError, safe_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("core", "pages", "app.py", "bench", "scripts")
SECRET = "secret-xyz-4f1c"


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def streamlit_config() -> dict[str, Any]:
    path = REPO / ".streamlit" / "config.toml"
    assert path.is_file(), ".streamlit/config.toml is missing: the server would bind 0.0.0.0"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_server_binds_localhost_only(streamlit_config: dict[str, Any]) -> None:
    assert streamlit_config["server"]["address"] == "127.0.0.1"


def test_upload_limit_is_set_deliberately(streamlit_config: dict[str, Any]) -> None:
    limit = streamlit_config["server"]["maxUploadSize"]
    assert isinstance(limit, int) and 1 <= limit <= 2000


def test_no_usage_statistics_and_protections_kept(streamlit_config: dict[str, Any]) -> None:
    assert streamlit_config["browser"]["gatherUsageStats"] is False
    server = streamlit_config["server"]
    # Streamlit's defaults are on; turning either off opens the app to other sites' pages.
    assert server.get("enableXsrfProtection", True) is True
    assert server.get("enableCORS", True) is True


def test_readme_says_how_to_expose_safely() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "127.0.0.1" in readme and ".streamlit/config.toml" in readme
    assert "ssh -L" in readme  # the safe way to reach it from another machine


# --------------------------------------------------------------------------- no unpickling


def _unsafe_loads(source: str, filename: str) -> list[str]:
    """Calls that can run code from a file: pickle/joblib/dill loads, torch.load without
    ``weights_only=True``, ``allow_pickle=True``, non-safe YAML loaders, hard-coded
    ``trust_remote_code=True``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        where = f"{filename}:{node.lineno}: {name}(...)"

        def is_true(key: str, kw: dict[str, ast.expr] = kw) -> bool:
            v = kw.get(key)
            return isinstance(v, ast.Constant) and v.value is True

        if name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in (
            "pickle",
            "cPickle",
            "dill",
            "joblib",
            "cloudpickle",
        ):
            found.append(where)
        elif name == "torch.load" and not is_true("weights_only"):
            found.append(where + " without weights_only=True")
        elif name in ("yaml.load", "yaml.load_all") and "SafeLoader" not in ast.unparse(node):
            found.append(where + " without SafeLoader")
        elif name in ("yaml.unsafe_load", "yaml.full_load", "torch.jit.load", "marshal.loads"):
            found.append(where)
        if is_true("allow_pickle"):
            found.append(where + " with allow_pickle=True")
        if is_true("trust_remote_code"):
            found.append(where + " with trust_remote_code=True")
    return found


@pytest.mark.parametrize(
    ("snippet", "flagged"),
    [
        ("import torch\ntorch.load(p)", True),
        ("import torch\ntorch.load(p, weights_only=False)", True),
        ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)", False),
        ("import pickle\npickle.load(f)", True),
        ("import pickle\npickle.loads(b)", True),
        ("import joblib\njoblib.load(p)", True),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", True),
        ("import numpy as np\nnp.load(p, allow_pickle=False)", False),
        ("import yaml\nyaml.load(s)", True),
        ("import yaml\nyaml.load(s, Loader=yaml.SafeLoader)", False),
        ("import yaml\nyaml.safe_load(s)", False),
        ("f(path, trust_remote_code=True)", True),
        ("f(path, trust_remote_code=spec.trust_remote_code)", False),
    ],
)
def test_unsafe_load_detector(snippet: str, flagged: bool) -> None:
    """The scanner below is only as good as this: it must flag each unsafe form."""
    assert bool(_unsafe_loads(snippet, "x.py")) is flagged


def _python_files() -> list[Path]:
    files: list[Path] = []
    for entry in SOURCES:
        p = REPO / entry
        files += [p] if p.is_file() else sorted(p.rglob("*.py")) if p.is_dir() else []
    return files


def test_no_code_runs_from_user_files() -> None:
    files = _python_files()
    assert any(f.parts[-2:] == ("teachers", "hf.py") for f in files)  # the scan covers core/
    found = [
        hit
        for f in files
        for hit in _unsafe_loads(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))
    ]
    assert not found, "unsafe loads:\n" + "\n".join(found)


def test_weights_are_read_with_safetensors() -> None:
    """Students and checkpoints use safetensors; teachers ask transformers for safetensors or
    a weights_only load (checked in tests/test_teachers.py for a pickle-only folder)."""
    students = (REPO / "core" / "students.py").read_text(encoding="utf-8")
    train = (REPO / "core" / "train.py").read_text(encoding="utf-8")
    teachers = (REPO / "core" / "teachers" / "hf.py").read_text(encoding="utf-8")
    assert "safetensors" in students and "safetensors" in train
    assert '"use_safetensors": True' in teachers and 'kwargs["weights_only"] = True' in teachers


# --------------------------------------------------------------------------- trust_remote_code


def test_trust_remote_code_is_off_by_default() -> None:
    assert TeacherSpec().trust_remote_code is False
    assert RunConfig().teacher.trust_remote_code is False
    assert TeacherSpec.model_fields["trust_remote_code"].default is False


def _hf_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_is_passed_through(
    trust: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value the user chose, and only it, reaches every transformers loader."""
    import transformers

    from lelp_studio import teachers
    from lelp_studio.types import Dataset, Split

    seen: list[tuple[str, Any]] = []

    def fake(kind: str) -> Any:
        def from_pretrained(*_a: Any, **kw: Any) -> Any:
            seen.append((kind, kw.get("trust_remote_code", "absent")))
            raise OSError("stop here")

        return from_pretrained

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake("config"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake("tokenizer"))
    spec = TeacherSpec(kind="hf", path=str(_hf_folder(tmp_path)), trust_remote_code=trust)
    ds = Dataset("d", ["a", "b"], {"train": Split(y=np.array([0, 1]), texts=["x", "y"])})
    with pytest.warns(UserWarning, match="trust_remote_code is on") if trust else _no_warning():
        with pytest.raises(teachers.TeacherError):
            teachers.compute_teacher_outputs(ds, spec)
        with pytest.raises(teachers.TeacherError):
            teachers.load_tokenizer(spec)
    assert seen == [("config", trust), ("tokenizer", trust)]


class _no_warning:  # noqa: N801 - used like pytest.warns
    """Fail if a trust_remote_code warning is raised inside the block."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
        assert not [w for w in self._log if "trust_remote_code" in str(w.message)]


# --------------------------------------------------------------------------- names become paths

BAD_NAMES = [
    "../escape",
    "../../etc/passwd",
    "..\\..\\escape",
    "/etc/passwd",
    "C:\\Windows\\x",
    "~/escape",
    "a/../../b",
    "runs/../../x",
    ".",
    "..",
    ".git",
    " ",
    "a\nb",
    "a\tb",
    "nul\x00byte",
    "abc\u202etxt.exe",  # right-to-left override
    "a\u200bb",  # zero-width space
    "\u0430dmin",  # Cyrillic a
    "caf\u00e9",  # NFC é: not in the allowed set
    "\uff0e\uff0e\uff0fescape",  # fullwidth ../
    "\u2024\u2024/escape",  # one-dot leaders
    "x" * 101,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:24] for n in BAD_NAMES])
@pytest.mark.parametrize("where", ["spec", "run", "run_dir", "group"])
def test_unsafe_names_never_become_paths(name: str, where: str, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    outside_before = sorted(p for p in tmp_path.rglob("*") if "ws" not in p.parts)
    inside_before = sorted((tmp_path / "ws").rglob("*"))
    calls = {
        "spec": lambda: ws.save_spec(name, {}),
        "run": lambda: ws.save_run({"run_id": name, "config": {}}),
        "run_dir": lambda: ws.run_dir(name),
        "group": lambda: ws.save_manual_group("fp", name, np.array([1])),
    }
    with pytest.raises(WorkspaceError, match=r"is not allowed: use 1-100 letters"):
        calls[where]()
    assert sorted(p for p in tmp_path.rglob("*") if "ws" not in p.parts) == outside_before
    assert sorted((tmp_path / "ws").rglob("*")) == inside_before
    assert ws.list_specs() == [] and ws.list_runs() == []


@pytest.mark.parametrize("name", ["my spec 1", "run-2024.01_b", "a+b=c,d@e", "X"])
def test_plain_names_are_kept_and_stay_inside(name: str, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    assert safe_name(name) == name
    assert ws.save_spec(name, {"k": 1}) == name and ws.load_spec(name) == {"k": 1}
    rdir = ws.run_dir(name).resolve()
    assert rdir.parent == (tmp_path / "ws" / "runs").resolve()


@pytest.mark.parametrize("sha", ["../../catalog", "/etc/passwd", "A" * 64, "0" * 63 + "/"])
def test_array_ids_cannot_name_other_files(sha: str, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(WorkspaceError, match="is not a sha256 hex digest"):
        ws.get_array(sha)


# --------------------------------------------------------------------------- no secrets


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LELP_TOKEN"):
        monkeypatch.setenv(var, SECRET)


def _files_with_secret(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in sorted(root.rglob("*"))
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]


def test_no_token_in_workspace_or_logs(
    token_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A digits distill and a MiniLM embed of text-demo rows with tokens in the environment:
    no file of the workspace, no line of output and no log record contains the token.

    The embed reads the first 40 rows of the text demo (a file here) rather than all 1,800,
    to stay within the test budget; the code path (tokenizer, encoder, head, cache) is the same.
    """
    caplog.set_level(logging.DEBUG)
    rows = (REPO / "sample_data" / "text_demo" / "train.csv").read_text(encoding="utf-8")
    demo = tmp_path / "text-demo-40.csv"
    demo.write_text("\n".join(rows.splitlines()[:41]) + "\n", encoding="utf-8")
    runner = CliRunner()
    ws = tmp_path / "ws"
    outputs = []
    for args in (
        ["distill", "examples/digits-kd.yaml", "--set", "name=token-check"]
        + ["--set", "train.epochs=2", "--set", "teacher.epochs=1", "--set", "teacher.hidden=16"],
        ["embed", "--set", f"dataset.source={demo}", "--set", "teacher.max_length=16"],
    ):
        res = runner.invoke(app, [*args, "-w", str(ws)])
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    wsobj = Workspace(ws)
    assert [r["name"] for r in wsobj.list_runs()] == ["token-check"]
    assert len(wsobj.list_teacher_outputs()) == 2
    assert len([p for p in ws.rglob("*") if p.is_file()]) > 5  # the scan has files to read
    assert _files_with_secret(ws) == []
    assert all(SECRET not in out for out in outputs)
    assert SECRET not in caplog.text
