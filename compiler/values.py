"""What the expansion interpreter computes with: values, op sets, id naming and size limits.

The interpreter (`compiler.evaluate`) runs the AST at compile time. Its values are plain
integers, tensors (a reference to an IR node, or to a node of a choice candidate's block while
a composite op is expanded inside a candidate) and op sets. Nothing here is global: every
expansion builds its own `IdPool` and `Budget`, so two compilations never interfere.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Union

from dasc.errors import Span, UsageError

# Sizes past which expansion refuses to continue. They are far beyond any real search space
# (DARTS at 20 layers is ~400 IR nodes) and stop a typo such as `layers = 1000000` from
# exhausting memory; the checks run before the work they guard.
MAX_NODES = 100_000
MAX_BLOCK_NODES = 1_000_000
MAX_LOOP = 1_000_000
MAX_STEPS = 1_000_000  # at ~10 µs a step: refused within seconds, not minutes


@dataclass(frozen=True)
class Tensor:
    """A tensor value: an IR node id, or an index into the block being built (-1: its input)."""

    ref: str | int


Value = Union[int, Tensor]


def kind(value: Value) -> str:
    """The word a diagnostic uses for a value's type."""
    return "tensor" if isinstance(value, Tensor) else "integer"


@dataclass(frozen=True)
class Member:
    """One op of an op set with its bound keyword arguments already evaluated.

    `name` is the member as written (`mbconv(k=5, e=6)`); it names the candidate.
    """

    name: str
    op: str
    kwargs: tuple[tuple[str, int], ...]
    kwarg_spans: tuple[Span, ...]
    span: Span


@dataclass(frozen=True)
class OpSet:
    """An evaluated op set (`ops NAME = {...}` or an inline `{a, b(k=5)}`)."""

    name: str
    members: tuple[Member, ...]
    span: Span


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """A hint naming the closest known names, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


class IdPool:
    """Hands out unique, readable ids: `x`, then `x_1`, `x_2`, ... for re-used names.

    Ids depend only on the order of expansion, so they are stable from one compile to the next.
    """

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._used: set[str] = set(taken)
        self._next: dict[str, int] = {}  # next suffix to try per name: keeps loops linear

    def peek(self, name: str) -> str:
        """The id `fresh(name)` would return now, without taking it."""
        if name not in self._used:
            return name
        i = self._next.get(name, 1)
        while f"{name}_{i}" in self._used:
            i += 1
        return f"{name}_{i}"

    def fresh(self, name: str) -> str:
        if name not in self._used:
            self._used.add(name)
            return name
        i = self._next.get(name, 1)
        while f"{name}_{i}" in self._used:
            i += 1
        self._next[name] = i + 1
        out = f"{name}_{i}"
        self._used.add(out)
        return out


@dataclass
class Naming:
    """Ids for the nodes one statement creates.

    The node that is the statement's value gets `base` itself (`darts3.n2`); every other node
    the expression creates gets `base.<what it is>` (`darts3.n2.e0`, `stem.conv`). With
    `base=None` (inside a choice candidate) the value node is named after its op.

    `base` is only planned (`IdPool.peek(request)`) until the value node is created, so a
    statement that creates no node (`x = image`, `s1 = cell(...)`) does not use up `x`.
    `reserved` says the caller already took `base` (a composite op's return value).
    """

    pool: IdPool
    base: str | None
    request: str | None = None
    reserved: bool = False

    @staticmethod
    def planned(pool: IdPool, request: str) -> "Naming":
        return Naming(pool, pool.peek(request), request)

    def root(self, desc: str) -> str:
        if self.base is None:
            return self.pool.fresh(desc)
        if self.reserved:
            return self.base
        return self.pool.fresh(self.request or self.base)

    def child(self, desc: str) -> str:
        return self.pool.fresh(f"{self.base}.{desc}" if self.base else desc)


@dataclass
class Budget:
    """Counts the work of one expansion so that runaway loops stop with a clear error."""

    nodes: int = 0
    block_nodes: int = 0
    steps: int = 0
    where: Span | None = field(default=None)

    def step(self, span: Span) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise UsageError(
                f"expansion needs more than {MAX_STEPS:,} steps; the space is too large",
                span, "lower the loop bounds or the parameters that drive them (--set ...)")

    def node(self, span: Span | None) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UsageError(
                f"the network would have more than {MAX_NODES:,} nodes", span,
                "lower the loop bounds or the parameters that drive them (--set ...)")

    def block_node(self, span: Span | None) -> None:
        self.block_nodes += 1
        if self.block_nodes > MAX_BLOCK_NODES:
            raise UsageError(
                f"the choice candidates would hold more than {MAX_BLOCK_NODES:,} ops", span,
                "lower the loop bounds or the parameters that drive them (--set ...)")
