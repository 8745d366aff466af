"""Checkpoints: written atomically, read with `weights_only=True`, checked against the space.

A checkpoint records a fingerprint of the compiled space; loading one made for another space
(or a different `--set`) is refused with a clear error instead of a shape mismatch deep in
`load_state_dict`. A truncated or foreign file is a `UsageError`, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from dasc.compiler.ir import IR, ChoiceNode, CombineNode, OpNode
from dasc.errors import Span, UsageError
from dasc.fsutil import atomic_write_bytes, input_problem

FORMAT = "dasc-checkpoint-1"


def fingerprint(ir: IR) -> str:
    """A hash of what the weights depend on: node ids, ops, arguments, shapes, α keys.

    Source spans are left out, so moving or reformatting the space file keeps its checkpoints
    valid, while any change to the network (a `--set`, an edited op) invalidates them.
    """
    digest = hashlib.sha256(ir.name.encode())
    for node_id, node in ir.nodes():
        parts = [node_id, type(node).__name__, str(node.shape), ",".join(node.inputs)]
        if isinstance(node, OpNode):
            parts.append(str(node.call))
        elif isinstance(node, ChoiceNode):
            parts.append(node.alpha)
            parts.extend(f"{c.name}:{';'.join(str(b.call) for b in c.nodes)}"
                         for c in node.candidates)
        elif isinstance(node, CombineNode):
            parts.append(f"{node.kind}/{node.keep}/{node.select}")
        digest.update("|".join(parts).encode())
    return digest.hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save into memory, then one atomic write (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, expect_fingerprint: str | None = None,
                    mismatch_hint: str = "use the same space file and --set values as the run "
                                         "that wrote it") -> dict:
    """Read a checkpoint safely; refuse corrupt files and checkpoints of another space."""
    span = Span.of_file(str(path))
    problem = input_problem(path)
    if problem:
        raise UsageError(f"checkpoint {path} {problem}", span,
                         "point at a checkpoint written by `dasc search` or `dasc train`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, IndexError,
            pickle.UnpicklingError, KeyError, AttributeError, TypeError) as exc:
        raise UsageError(f"checkpoint {path} is corrupt or not a dasc checkpoint "
                         f"({type(exc).__name__})", span,
                         "use another checkpoint of the run, or start again with --force") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dasc checkpoint", span,
                         "pass a checkpoint written by `dasc search` or `dasc train`")
    if expect_fingerprint is not None and state.get("fingerprint") != expect_fingerprint:
        raise UsageError(f"checkpoint {path} was made for a different space or parameters", span,
                         mismatch_hint)
    return state
