"""The compiler driver: load -> expand -> shapes -> adapters (-> constraints), verified.

Each pass is a small named step; with `check=True` (tests, and the CLI's default: it is cheap)
the verifier runs after every pass, so a pass that breaks an IR invariant fails loudly naming
itself instead of corrupting a later stage.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable, Mapping

from dasc.compiler.adapters import insert_adapters
from dasc.compiler.expand import expand
from dasc.compiler.ir import IR
from dasc.compiler.shapes import infer_shapes
from dasc.compiler.verify import verify
from dasc.dsl import ast
from dasc.errors import Sources


@dataclass(frozen=True)
class Pass:
    """One IR -> IR pass; `name` is what the verifier reports when the pass breaks the IR."""

    name: str
    apply: Callable[[IR], IR]


PASSES: tuple[Pass, ...] = (
    Pass("shapes", infer_shapes),
    Pass("adapters", insert_adapters),
)


def compile_module(m: ast.Module, overrides: Mapping[str, int] | None = None, *,
                   check: bool = True, constraints: bool = True) -> IR:
    """Compile a parsed (includes resolved) module into a shaped, adapted IR.

    Raises a `DascError` for any mistake in the space, `VerifyError` for a compiler bug.
    `constraints=False` skips the satisfiability check (for tools that report it themselves).
    """
    ir = expand(m, overrides or {})
    if check:
        verify(ir, "expand")
    for p in PASSES:
        ir = p.apply(ir)
        if check:
            verify(ir, p.name)
    if constraints:
        check_constraints(ir)
    return ir


def compile_space(path: str, overrides: Mapping[str, int] | None = None,
                  sources: Sources | None = None, *, check: bool = True,
                  constraints: bool = True) -> IR:
    """Read, parse and compile the `.das` file at `path` (and its includes).

    `sources` collects the texts read, so the caller can render diagnostics with quotes.
    """
    from dasc.dsl.loader import load_space

    m = load_space(path, sources if sources is not None else Sources())
    return compile_module(m, overrides, check=check, constraints=constraints)


# ---------------------------------------------------------------------- constraint hook
# HOOK: the satisfiability check of `constraint paths/count` lives in
# `dasc.compiler.constraints.check_satisfiable(ir)` (another engineer's module). It raises a
# ConstraintError naming the rule and the path when no architecture satisfies the rules.
# Until that module exists the check is skipped; an ImportError *inside* it is not swallowed.

_CONSTRAINTS = "dasc.compiler.constraints"


def check_constraints(ir: IR) -> None:
    """Run `constraints.check_satisfiable(ir)` when that module is installed."""
    if importlib.util.find_spec(_CONSTRAINTS) is None:
        return
    module = importlib.import_module(_CONSTRAINTS)
    check = getattr(module, "check_satisfiable", None)
    if check is not None:
        check(ir)
