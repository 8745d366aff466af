"""One command at a time in a run or training directory (fsutil.DirLock).

Why: two `--resume`s of one run, or a `--force` over a run that is still going, would both
write its checkpoints (and sweep each other's half-written temporaries). The lock is a `flock`,
so a killed holder never leaves it stale, and the lock file does not make a directory look
"begun" to `-o`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from dasc.errors import UsageError
from dasc.fsutil import LOCK_FILE, DirLock
from dasc.runtime.rundir import prepare_run_dir

TRY_LOCK = """
import sys
from pathlib import Path
from dasc.errors import UsageError
from dasc.fsutil import DirLock
try:
    DirLock().take(Path(sys.argv[1]), "search")
except UsageError as err:
    print(err.message)
    sys.exit(3)
"""


def _other_process_takes(folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_a_held_directory_is_refused_to_another_process_until_released(tmp_path):
    lock = DirLock()
    lock.take(tmp_path, "search")
    lock.take(tmp_path, "search")  # this process again: no self-deadlock
    refused = _other_process_takes(tmp_path)
    assert refused.returncode == 3 and "is in use by another dasc search" in refused.stdout
    lock.release()
    assert _other_process_takes(tmp_path).returncode == 0


def test_a_dead_holder_leaves_no_stale_lock(tmp_path):
    assert _other_process_takes(tmp_path).returncode == 0  # that process held it, then exited
    assert (tmp_path / LOCK_FILE).exists()
    DirLock().take(tmp_path, "training")


def test_the_lock_file_alone_does_not_make_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).touch()
    prepare_run_dir(run, force=False, resume=False)  # not "already exists"
    with pytest.raises(UsageError, match="not a dasc run"):
        prepare_run_dir(run, force=False, resume=True)


def test_a_missing_directory_is_not_locked(tmp_path):
    lock = DirLock()
    lock.take(tmp_path / "nothere", "search")
    assert not (tmp_path / "nothere").exists()
    lock.release()
