"""The compile-time interpreter: statements, integer expressions and name lookup.

`compiler.expand` runs the network body through an `Interpreter`; loops and `if`s are decided
here, so what reaches the IR is the unrolled network. Calls (ops, composite ops, cells,
choices, `sum`/`concat`) are in `compiler.calls`, mixed into the interpreter.

Every mistake is a located `DascError`: the interpreter never lets a Python exception (a
`ZeroDivisionError`, a `RecursionError`) stand for a user error.
"""

from __future__ import annotations

from dasc.compiler.calls import Calls
from dasc.compiler.scope import LANGUAGE_CALLS, Frame, Globals
from dasc.compiler.values import (
    MAX_LOOP, Budget, IdPool, Naming, Tensor, Value, did_you_mean,
)
from dasc.dsl import ast
from dasc.errors import NameError_, Span, TypeError_, UsageError
from dasc.ops.registry import REGISTRY

_ARITH = {"+", "-", "*", "/", "%"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


class Interpreter(Calls):
    """Runs bodies against module-level `Globals`, emitting nodes to each frame's target."""

    def __init__(self, globals_: Globals, budget: Budget) -> None:
        self.g = globals_
        self.budget = budget
        self.init_calls()

    # ------------------------------------------------------------------ frames

    def module_frame(self, local: dict[str, Value] | None = None) -> Frame:
        """A frame for module-level integer expressions (params, defaults, constraints)."""
        return Frame("module", "module", dict(local or {}), None, IdPool())

    # ------------------------------------------------------------------ statements

    def run(self, body: tuple[ast.Stmt, ...], frame: Frame) -> bool:
        """Run statements; True once a `return` ran (its value is in `frame.result`)."""
        for st in body:
            self.budget.step(st.span)
            if isinstance(st, ast.Assign):
                self.assign(st, frame)
            elif isinstance(st, ast.For):
                if self.loop(st, frame):
                    return True
            elif isinstance(st, ast.If):
                branch = st.then if self.int(st.test, frame, "an `if` test") else st.orelse
                if self.run(branch, frame):
                    return True
            elif isinstance(st, ast.OpSetDecl):
                frame.opsets[st.name.id] = self.opset(st.name.id, st.members, frame, st.span)
            elif isinstance(st, ast.Return):
                frame.result = self.expr(st.value, frame, frame.return_naming(), root=True)
                frame.result_span = st.span
                return True
            else:  # pragma: no cover - the parser only builds the statements above
                raise TypeError(f"unknown statement {st!r}")
        return False

    def assign(self, st: ast.Assign, frame: Frame) -> None:
        if len(st.targets) != len(st.values):
            raise TypeError_(
                f"{len(st.targets)} names but {len(st.values)} values in this assignment",
                st.span, "write as many values as names: a, b = x, y")
        seen: set[str] = set()
        for t in st.targets:
            if t.id in seen:
                raise NameError_(f"`{t.id}` is assigned twice in one statement", t.span)
            seen.add(t.id)
        values = [self.expr(v, frame, frame.base(t.id), root=True)
                  for t, v in zip(st.targets, st.values)]
        for t, v in zip(st.targets, values):
            frame.vars[t.id] = v

    def loop(self, st: ast.For, frame: Frame) -> bool:
        lo = self.int(st.lo, frame, "a loop bound")
        hi = self.int(st.hi, frame, "a loop bound")
        if hi - lo > MAX_LOOP:
            a, b = st.lo.span, st.hi.span
            raise UsageError(
                f"this loop would run {hi - lo:,} times (more than {MAX_LOOP:,})",
                Span(a.file, a.line, a.col, b.end_line, b.end_col),
                "lower the loop bounds or the parameters that drive them (--set ...)")
        for i in range(lo, hi):
            frame.vars[st.var.id] = i
            if self.run(st.body, frame):
                return True
        return False

    # ------------------------------------------------------------------ expressions

    def expr(self, e: ast.Expr, frame: Frame, naming: Naming, root: bool = False,
             edge: int | None = None) -> Value:
        """Evaluate `e`. A node it creates is named `naming.base` when `root`, else a child.

        `edge` is the position of `e` among a `sum`/`concat`'s inputs; a choice there is named
        `e<edge>` (DARTS's edges), elsewhere `choice`.
        """
        if isinstance(e, ast.Num):
            if isinstance(e.value, float):
                raise TypeError_(f"`{e.value}` is not an integer", e.span,
                                 "only `search { }` settings may be fractional")
            return int(e.value)
        if isinstance(e, ast.Str):
            raise TypeError_("a string is not a value here", e.span,
                             "strings only appear in `include` and `search { }`")
        if isinstance(e, ast.Name):
            return self.lookup(e, frame)
        if isinstance(e, ast.Unary):
            v = self.int(e.operand, frame, f"the operand of `{e.op}`", naming)
            return -v if e.op == "-" else int(not v)
        if isinstance(e, ast.Binary):
            return self.binary(e, frame, naming)
        if isinstance(e, ast.Cond):
            taken = e.then if self.int(e.test, frame, "an `if` test", naming) else e.orelse
            return self.expr(taken, frame, naming, root, edge)
        if isinstance(e, ast.Call):
            return self.call(e, frame, naming, root)
        if isinstance(e, ast.Choice):
            return self.choice(e, frame, naming, root, edge)
        raise TypeError(f"unknown expression {e!r}")  # pragma: no cover

    def binary(self, e: ast.Binary, frame: Frame, naming: Naming) -> int:
        what = f"an operand of `{e.op}`"
        left = self.int(e.left, frame, what, naming)
        if e.op == "and":
            return int(bool(left) and bool(self.int(e.right, frame, what, naming)))
        if e.op == "or":
            return int(bool(left) or bool(self.int(e.right, frame, what, naming)))
        right = self.int(e.right, frame, what, naming)
        if e.op in ("/", "%") and right == 0:
            raise TypeError_("integer division by zero", e.span,
                             f"the right operand of `{e.op}` evaluates to 0 here")
        if e.op in _ARITH:
            value = {"+": left + right, "-": left - right, "*": left * right,
                     "/": left // right if right else 0,
                     "%": left % right if right else 0}[e.op]
            if abs(value) > ast.MAX_INT:  # `p1 = p0 * p0` chains would otherwise run for hours
                raise UsageError(f"integer overflow: `{e.op}` gives a number of more than "
                                 f"{ast.MAX_INT_DIGITS} digits", e.span,
                                 f"integers in a space have at most {ast.MAX_INT_DIGITS} digits")
            return value
        if e.op in _COMPARE:
            return int({"==": left == right, "!=": left != right, "<": left < right,
                        "<=": left <= right, ">": left > right, ">=": left >= right}[e.op])
        raise TypeError(f"unknown operator {e.op!r}")  # pragma: no cover

    def int(self, e: ast.Expr, frame: Frame, what: str, naming: Naming | None = None) -> int:
        """Evaluate `e`, which must be an integer (`what` names the place for the error)."""
        v = self.expr(e, frame, naming or Naming(frame.pool, frame.prefix or None))
        if isinstance(v, Tensor):
            hint = ("tensors are combined with sum(a, b) or concat(a, b); arithmetic is "
                    "for integers" if what.startswith("an operand") else None)
            raise TypeError_(f"expected an integer for {what}, got a tensor", _span(e), hint)
        return v

    def tensor(self, e: ast.Expr, frame: Frame, naming: Naming, what: str,
               edge: int | None = None) -> Tensor:
        """Evaluate `e`, which must be a tensor."""
        v = self.expr(e, frame, naming, edge=edge)
        if not isinstance(v, Tensor):
            raise TypeError_(f"expected a tensor for {what}, got the integer {v}", _span(e))
        return v

    # ------------------------------------------------------------------ names

    def lookup(self, e: ast.Name, frame: Frame) -> Value:
        name = e.id
        if name in frame.vars:
            return frame.vars[name]
        if name in self.g.params:
            return self.g.params[name]
        if name == self.g.input_name:
            if frame.kind == "network":
                return Tensor(name)
            raise NameError_(f"the input `{name}` is only visible in the network body", e.span,
                             "pass it to the cell or op as a tensor argument")
        if name in frame.opsets or name in self.g.opsets:
            raise TypeError_(f"`{name}` is an op set, not a value", e.span,
                             f"use it in a choice: choice({name}, x)")
        if name in self.callables():
            raise TypeError_(f"`{name}` is an op, not a value", e.span,
                             f"call it: {name}(x, ...)")
        known = list(frame.vars) + list(self.g.params)
        if frame.kind == "network" and self.g.input_name:
            known.append(self.g.input_name)
        raise NameError_(f"unknown name `{name}`", e.span, did_you_mean(name, known))

    def callables(self) -> set[str]:
        return set(self.g.ops) | set(self.g.cells) | set(REGISTRY.names()) | set(LANGUAGE_CALLS)


def _span(e: ast.Expr):
    return getattr(e, "span", None)
