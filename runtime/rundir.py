"""The run directory: what `dasc search` leaves for the user, and the guard against clobbering.

Layout (documented in the README):
  config.json          resolved settings, space path, --set values, seed, dasc version
  space.das            the space's text as the search read it (what --resume compiles)
  metrics.jsonl        one JSON object per epoch
  alpha_history.json   gate weights per α key per epoch
  checkpoints/last.pt  newest checkpoint (resume point); checkpoints/epoch_<n>.pt per epoch
  alpha.png, curves.png  plots
  arch.json            the derived architecture
  summary.json         final figures (supernet and derived accuracy, discretization gap)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dasc.errors import Span, UsageError
from dasc.fsutil import LOCK_FILE, atomic_write_text, check_writable_dir

MARKER = "config.json"
SPACE_COPY = "space.das"


def prepare_run_dir(path: Path, *, force: bool, resume: bool) -> None:
    """Create RUN_DIR; an existing one is only replaced with --force, and only if it is a run.

    `--force` never deletes a directory that does not look like a dasc run (no config.json):
    pointing `-o` at a home directory by mistake must not erase it.
    """
    span = Span.of_file(str(path))
    if resume:
        if not (path / MARKER).is_file():
            raise UsageError(f"{path} is not a dasc run directory (no {MARKER})", span,
                             "pass the RUN_DIR that an earlier `dasc search -o RUN_DIR` created")
        for folder in (path, path / "checkpoints"):
            check_writable_dir(folder, span)
        sweep_temporaries(path)
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory", span, "choose another -o path")
    if path.is_dir() and _begun(path):
        if not force:
            raise UsageError(f"run directory {path} already exists", span,
                             "pass --force to replace it, --resume to continue it, or choose another -o")
        if not (path / MARKER).is_file():
            raise UsageError(f"{path} is not empty and is not a dasc run directory; refusing to "
                             "delete it even with --force", span, "choose an empty or new -o path")
        shutil.rmtree(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"cannot create {path}: {parent} is a file, not a directory", span,
                         "choose an -o path inside a directory")
    if not parent.is_dir():
        raise UsageError(f"cannot create {path}: directory {parent} does not exist", span,
                         f"create it first (mkdir -p {parent}) or choose another -o")
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run directory {path}: {exc.strerror}", span,
                         "choose a writable -o path") from None


def _begun(path: Path) -> bool:
    """Whether RUN_DIR holds anything: a run killed between creating `checkpoints/` and writing
    config.json left only that empty folder, which must not block `-o` (nor --force refuse)."""
    return any(p.name != "checkpoints" or not p.is_dir() or any(p.iterdir())
               for p in path.iterdir() if p.name != LOCK_FILE)


def sweep_temporaries(path: Path) -> None:
    """Remove `.NAME.*.tmp` files a killed process left mid-write (fsutil's atomic writes):
    the real files beside them are intact, the temporaries are only litter."""
    for folder in (path, path / "checkpoints"):
        for tmp in folder.glob(".*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: Path, lines: list[dict]) -> None:
    """Rewrite the whole file atomically: a crash leaves the old file, never a torn line."""
    atomic_write_text(path, "".join(json.dumps(line) + "\n" for line in lines))


def read_json(path: Path) -> object:
    span = Span.of_file(str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", span, "is this the right run directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{path} is unreadable or not valid JSON ({type(exc).__name__})", span,
                         "the run directory is damaged; start again with --force") from None
