"""`--resume` compiles the copy of the space in RUN_DIR, not whatever SPACE has become.

Why: a search runs for hours, and in that time the space file is edited (the next experiment),
deleted (a cleaned-up scratch directory), or was never a file at all (`dasc search <(gen.sh)`,
whose /dev/fd/63 is gone when the process dies). Each of those used to strand the run: resume
refused with "no such file" or "checkpoint built for another space". Now every one resumes to the
same arch.json as an uninterrupted run; includes still resolve beside the original file.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_dasc

pytestmark = pytest.mark.slow

ARGS = ["--data", "digits", "--epochs", "1", "--seed", "0", "--set", "C=4", "--set", "layers=2",
        "--batch-size", "64", "--quiet"]
ENV = {"OMP_NUM_THREADS": "1"}


def _space_dir(tmp_path: Path) -> Path:
    """digits.das split in two, so the resumed copy must still find its include."""
    folder = tmp_path / "space"
    folder.mkdir()
    text = (ROOT / "spaces" / "digits.das").read_text(encoding="utf-8")
    ops_start = text.index("\nops ") + 1
    ops_end = text.index("}", ops_start) + 1
    (folder / "ops.das").write_text(text[ops_start:ops_end] + "\n", encoding="utf-8")
    (folder / "main.das").write_text(
        text[:ops_start] + 'include "ops.das"\n' + text[ops_end:], encoding="utf-8")
    return folder


def _killed_run(space: str, run: Path, cwd: Path) -> None:
    """Start a search that SIGKILLs itself after its fifth step (a real kill, no cleanup)."""
    result = run_dasc("search", space, *ARGS, "-o", str(run), cwd=cwd,
                      env={**ENV, "DASC_TEST_DIE_AT_STEP": "0:5"})
    assert result.returncode == -9, result.stderr
    assert (run / "space.das").is_file()
    assert not (run / "arch.json").exists()


def _resume(run: Path) -> str:
    result = run_dasc("search", "--resume", str(run), "--quiet", env=ENV)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_resume_survives_an_edited_a_deleted_and_a_piped_space(tmp_path):
    folder = _space_dir(tmp_path)
    reference = run_dasc("search", str(folder / "main.das"), *ARGS, "-o", str(tmp_path / "ref"),
                         env=ENV)
    assert reference.returncode == 0, reference.stderr
    expected = json.loads((tmp_path / "ref" / "arch.json").read_text())

    # edited: the note says the copy is used, and the result is the original space's
    _killed_run(str(folder / "main.das"), tmp_path / "edited", folder)
    original = (folder / "main.das").read_text(encoding="utf-8")
    (folder / "main.das").write_text(original.replace("layers", "depth"), encoding="utf-8")
    note = _resume(tmp_path / "edited")
    assert "has changed since the search started" in note and "space.das" in note
    assert json.loads((tmp_path / "edited" / "arch.json").read_text()) == expected

    # read from a pipe: /dev/fd/N is gone after the kill (a pipe has no directory to include
    # from, so the flat digits.das goes through it)
    (folder / "main.das").write_text(original, encoding="utf-8")
    piped = tmp_path / "piped"
    flat = shlex.quote(str(ROOT / "spaces" / "digits.das"))
    script = f'"$0" -m dasc search <(cat {flat}) "$@" -o {shlex.quote(str(piped))}'
    proc = subprocess.run(["bash", "-c", script, sys.executable, *ARGS], cwd=folder,
                          env={**os.environ, **ENV, "DASC_TEST_DIE_AT_STEP": "0:5"},
                          capture_output=True, stdin=subprocess.DEVNULL)
    # killed: bash reports 137, or -9 where it exec'd dasc itself
    assert proc.returncode in (-9, 137), proc.stderr.decode()[-2000:]
    request = json.loads((piped / "config.json").read_text())["request"]
    assert request["space"].startswith("/dev/fd/")
    assert "changed" not in _resume(piped)
    assert json.loads((piped / "arch.json").read_text()) == expected

    # deleted: only the include is left beside where it was
    _killed_run(str(folder / "main.das"), tmp_path / "deleted", folder)
    (folder / "main.das").unlink()
    _resume(tmp_path / "deleted")
    assert json.loads((tmp_path / "deleted" / "arch.json").read_text()) == expected


def test_a_run_without_the_copy_reads_space_again(tmp_path):
    """Runs made before the copy existed (or killed between config.json and the copy)."""
    folder = _space_dir(tmp_path)
    run = tmp_path / "old"
    _killed_run(str(folder / "main.das"), run, folder)
    (run / "space.das").unlink()
    _resume(run)
    assert (run / "arch.json").is_file()
    shutil.rmtree(run / "checkpoints")
    (folder / "main.das").unlink()
    result = run_dasc("search", "--resume", str(run), "--quiet", env=ENV)
    assert result.returncode == 2 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
