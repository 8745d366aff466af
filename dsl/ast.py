"""The abstract syntax of `.das` files: frozen dataclasses, each carrying its source span.

Spans are excluded from equality (`compare=False`) so that `parse(print(ast)) == ast` holds
although the printer moves things around; they are still there for every diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dasc.errors import Span

_NOSPAN = Span("<none>", 0, 0, 0, 0)

#: Integers are arbitrarily large up to this many digits (a literal, a `--set` value, a computed
#: value). Without a bound, a few lines of `p1 = p0 * p0` run for hours and a 100,000-digit
#: literal takes seconds to convert; no channel count, size or loop bound comes near it.
MAX_INT_DIGITS = 100
MAX_INT = 10**MAX_INT_DIGITS - 1


def _span() -> Span:
    return field(default=_NOSPAN, compare=False, repr=False)


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    """An integer or float literal (floats only make sense in `search` defaults)."""

    value: int | float
    span: Span = _span()


@dataclass(frozen=True)
class Str:
    """A string literal: include paths and `search` values such as a latency table path."""

    value: str
    span: Span = _span()


@dataclass(frozen=True)
class Name:
    """A reference to a parameter, variable, tensor, op set, op or cell."""

    id: str
    span: Span = _span()


@dataclass(frozen=True)
class Unary:
    """`-x` or `not x`."""

    op: str
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    """Integer arithmetic (`+ - * / %`, `/` is floor division), comparisons, `and`, `or`."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Cond:
    """`if test then a else b`, decided at compile time: the untaken branch is never built."""

    then: "Expr"
    test: "Expr"
    orelse: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Keyword:
    """`name=value` inside a call or an op reference."""

    name: str
    value: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    """`f(args, kw=v)`: a built-in or composite op, a cell, or `min`/`max`/`sum`/`concat`.

    `keep` is the input-selection count of `sum(...) keep k` (DARTS keeps 2), else None.
    """

    func: Name
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...] = ()
    keep: "Expr | None" = None
    span: Span = _span()


@dataclass(frozen=True)
class OpRef:
    """A member of an op set: an op name with some keyword arguments bound, e.g. `conv(c=32)`."""

    name: Name
    kwargs: tuple[Keyword, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class OpSetLit:
    """An inline op set `{a, b(k=5)}`, usable wherever an op-set name is."""

    members: tuple[OpRef, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Choice:
    """`choice(SET, x, kw=v)`: a mixture over the set's ops applied to tensor `x`.

    Choice points have no user-written label: the compiler names them after the enclosing cell,
    the assignment target and the position in the statement, which is stable under formatting.
    """

    opset: Name | OpSetLit
    arg: "Expr"
    kwargs: tuple[Keyword, ...] = ()
    span: Span = _span()


Expr = Union[Num, Str, Name, Unary, Binary, Cond, Call, Choice]

# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Assign:
    """`a = e` or `a, b = e1, e2` (simultaneous, so `s0, s1 = s1, cell(s0, s1)` works)."""

    targets: tuple[Name, ...]
    values: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class For:
    """`for i in lo .. hi { ... }`, half-open, unrolled at compile time."""

    var: Name
    lo: Expr
    hi: Expr
    body: tuple["Stmt", ...]
    span: Span = _span()


@dataclass(frozen=True)
class If:
    """`if test { ... } else { ... }`, decided at compile time.

    `then_span` covers the braces of the first block: the formatter needs to know where it
    closes to keep a comment written just before `} else {` in the first block.
    """

    test: Expr
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()
    span: Span = _span()
    then_span: Span = _span()


@dataclass(frozen=True)
class Return:
    """The value of a cell, composite op or network body."""

    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class OpSetDecl:
    """`ops NAME = { a, b(k=5), ... }` at top level or inside a body (then it sees locals)."""

    name: Name
    members: tuple[OpRef, ...]
    span: Span = _span()


Stmt = Union[Assign, For, If, Return, OpSetDecl]

# ----------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Param:
    """A formal parameter: a tensor (before `;`) or an integer with an optional default."""

    name: Name
    default: Expr | None = None
    span: Span = _span()


@dataclass(frozen=True)
class Signature:
    """`(x, y; c, k=3)`: tensor inputs, then integer parameters."""

    tensors: tuple[Param, ...]
    ints: tuple[Param, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class SpaceDecl:
    """`space NAME`: the space's name, recorded in IR, run directories and exported models."""

    name: Name
    span: Span = _span()


@dataclass(frozen=True)
class Include:
    """`include "other.das"`: declarations of another file, resolved relative to this one."""

    path: Str
    span: Span = _span()


@dataclass(frozen=True)
class ParamDecl:
    """`param NAME = expr`: a global integer the CLI can override with `--set NAME=VALUE`."""

    name: Name
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class InputDecl:
    """`input NAME [C, H, W]`: the network's input tensor (batch dimension implied)."""

    name: Name
    dims: tuple[Expr, Expr, Expr]
    span: Span = _span()


@dataclass(frozen=True)
class OpDecl:
    """`op NAME(x; c, k=3) { ... return e }`: a composite op built from simpler ones."""

    name: Name
    sig: Signature
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class CellDecl:
    """`cell NAME(s0, s1; C) shared|independent|shared per P, Q { ... }`.

    With `shared`, every instance of the cell uses the same architecture parameters; `shared per`
    groups instances by the values of the named integer parameters (DARTS's normal and reduction
    cells are one cell shared per stride); `independent` gives each instance its own.
    """

    name: Name
    sig: Signature
    sharing: str  # "shared" | "independent"
    share_per: tuple[Name, ...]
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class NetworkDecl:
    """`network { ... return logits }`: the macro skeleton, unrolled by the compiler."""

    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class PathConstraint:
    """`constraint paths [in CELL] >= K`: every input-to-output path keeps >= K non-skip ops."""

    scope: Name | None
    min_nonskip: Expr
    span: Span = _span()


@dataclass(frozen=True)
class CountConstraint:
    """`constraint count OP [in CELL] <= K`: at most K choices pick OP (P-DARTS caps skips)."""

    op: Name
    scope: Name | None
    max_count: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Setting:
    """`key = value` inside `search { }`; keys are validated by the search layer."""

    key: Name
    value: Num | Str | Name
    span: Span = _span()


@dataclass(frozen=True)
class SearchDecl:
    """`search { gate = softmax ... }`: per-space defaults that CLI flags override."""

    settings: tuple[Setting, ...]
    span: Span = _span()


Decl = Union[SpaceDecl, Include, ParamDecl, InputDecl, OpSetDecl, OpDecl, CellDecl,
             NetworkDecl, PathConstraint, CountConstraint, SearchDecl]


@dataclass(frozen=True)
class Comment:
    """A `#` comment. Not part of the language, but kept so that `dasc fmt` does not drop it."""

    text: str
    span: Span = _span()


@dataclass(frozen=True)
class Module:
    """One parsed `.das` file, declarations in source order (includes not yet resolved).

    `comments` are those of this file in source order; the formatter places them by their spans.
    """

    decls: tuple[Decl, ...]
    file: str = field(default="<string>", compare=False)
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False)
