"""Checkpoints: written atomically, read with `weights_only=True`, checked against the space.

A checkpoint records a fingerprint of the compiled space; loading one made for another space
(or a different `--set`) is refused with a clear error instead of a shape mismatch deep in
`load_state_dict`. A truncated or foreign file is a `UsageError`, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import torch

from dasc.compiler import serialize
from dasc.compiler.ir import IR
from dasc.errors import Span, UsageError
from dasc.fsutil import atomic_write_bytes

FORMAT = "dasc-checkpoint-1"


def fingerprint(ir: IR) -> str:
    """A hash of the compiled space (graph, shapes, α keys): equal iff the networks agree."""
    text = json.dumps(serialize.dump(ir), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save into memory, then one atomic write (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, expect_fingerprint: str | None = None) -> dict:
    """Read a checkpoint safely; refuse corrupt files and checkpoints of another space."""
    span = Span.of_file(str(path))
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist", span,
                         "point at a checkpoint written by `dasc search` or `dasc train`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError, KeyError, AttributeError) as exc:
        raise UsageError(f"checkpoint {path} is corrupt or not a dasc checkpoint "
                         f"({type(exc).__name__})", span,
                         "use another checkpoint of the run, or start again with --force") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dasc checkpoint", span,
                         "pass a checkpoint written by `dasc search` or `dasc train`")
    if expect_fingerprint is not None and state.get("fingerprint") != expect_fingerprint:
        raise UsageError(f"checkpoint {path} was made for a different space or parameters", span,
                         "use the same space file and --set values as the run that wrote it")
    return state
