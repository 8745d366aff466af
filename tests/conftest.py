"""Shared test fixtures: the repository layout, running `dasc` for real, golden files.

Kept free of torch (and of every dasc stage) at import time: tests that check the front end
stays torch-free run `dasc` in a subprocess, but a conftest importing torch would still slow
every worker's start for nothing.

Golden files: `golden(path, actual)` compares with the file under tests/golden/; run
`DASC_UPDATE_GOLDEN=1 pytest ...` to rewrite them after an intended change, then review the
diff in git.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "spaces"
GOLDEN = ROOT / "tests" / "golden"

# Under pytest-xdist every worker is a process on a shared machine: give each its share of
# cores for torch's thread pools (read when torch is first imported, which is after this).
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, _workers)))


@dataclass(frozen=True)
class Result:
    """What a `dasc` subprocess did: exit status and both output streams as text."""

    returncode: int
    stdout: str
    stderr: str


def run_dasc(*args: str, cwd: Path | str = ROOT, env: dict[str, str] | None = None,
             timeout: float = 300, python_flags: tuple[str, ...] = ()) -> Result:
    """Run `python -m dasc ARGS` exactly as a user would (new process, real exit code)."""
    full_env = dict(os.environ)
    full_env.pop("DASC_DOT", None)
    full_env.setdefault("PYTHONIOENCODING", "utf-8")
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, *python_flags, "-m", "dasc", *args], cwd=cwd,
                          env=full_env, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def dasc():
    """`dasc("compile", "spaces/pooling.das")` -> Result; runs in the repository root."""
    return run_dasc


def golden_check(relpath: str, actual: str) -> None:
    """Compare `actual` with tests/golden/<relpath>, or rewrite it when DASC_UPDATE_GOLDEN=1."""
    path = GOLDEN / relpath
    if os.environ.get("DASC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; run with DASC_UPDATE_GOLDEN=1 to create it")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (f"output differs from {path.relative_to(ROOT)} "
                                "(DASC_UPDATE_GOLDEN=1 rewrites it)")


@pytest.fixture
def golden():
    return golden_check


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def spaces_dir() -> Path:
    return SPACES
