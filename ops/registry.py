"""The one registry of operations: shape rule, cost, torch builder, drawing style in one place.

Adding an op is one `OpSpec` in one small file of `dasc.ops`. The compiler uses the shape and
cost rules and never imports torch; the runtime calls `build`, which imports torch lazily, so
`dasc compile`, `fmt` and `render` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True, order=True)
class Shape:
    """A tensor's shape without the batch dimension: channels, height, width."""

    c: int
    h: int
    w: int

    def __str__(self) -> str:
        return f"[{self.c}, {self.h}, {self.w}]"


class OpShapeIssue(Exception):
    """Raised by a shape rule; the compiler turns it into a located `ShapeError`."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ParamSpec:
    """An integer parameter of an op. `default=None` and not required: derived from the input
    (the output channel count of most ops defaults to the input's)."""

    name: str
    default: int | None = None
    required: bool = False
    minimum: int = 0
    maximum: int | None = None
    doc: str = ""


Args = Mapping[str, int]
ShapeRule = Callable[[tuple[Shape, ...], Args], Shape]
CostRule = Callable[[tuple[Shape, ...], Args], int]
Builder = Callable[[tuple[Shape, ...], Args], "torch.nn.Module"]


@dataclass(frozen=True)
class Style:
    """How `render` draws the op (Graphviz attributes)."""

    color: str = "#4c72b0"
    shape: str = "box"


@dataclass(frozen=True)
class OpSpec:
    """Everything dasc knows about one built-in operation.

    `arity` is the number of tensor inputs (-1: any number >= 1, for `sum` and `concat`).
    `skip` marks ops that pass the input through (identity, DARTS's skip_connect): path
    constraints count ops that are not skip. `zero` marks `none`, which removes the edge.
    `params_count` and `macs` follow the DARTS/NAS-Bench-201 convention: MACs count
    convolutions and linear layers only, for one input.
    """

    name: str
    arity: int
    params: tuple[ParamSpec, ...]
    shape: ShapeRule
    params_count: CostRule
    macs: CostRule
    build: Builder
    skip: bool = False
    zero: bool = False
    style: Style = field(default_factory=Style)
    doc: str = ""

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


class Registry:
    """Name -> OpSpec. One instance (`REGISTRY`) holds the built-ins; tests may build others."""

    def __init__(self) -> None:
        self._ops: dict[str, OpSpec] = {}

    def register(self, spec: OpSpec) -> OpSpec:
        if spec.name in self._ops:
            raise ValueError(f"op {spec.name!r} registered twice")
        self._ops[spec.name] = spec
        return spec

    def get(self, name: str) -> OpSpec | None:
        return self._ops.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def names(self) -> list[str]:
        return sorted(self._ops)


REGISTRY = Registry()


def resolve_args(spec: OpSpec, given: Args) -> dict[str, int]:
    """Given arguments plus integer defaults; derived parameters stay absent."""
    out = {p.name: p.default for p in spec.params if p.default is not None}
    out.update(given)
    return out


def check_args(spec: OpSpec, args: Args) -> None:
    """Reject unknown names, missing required values and values out of range.

    Every built-in shape rule calls this first, so a bad literal (`stride=0`, `bias=2`) is a
    located shape error rather than a crash deep inside torch when the network is built.
    """
    known = {p.name for p in spec.params}
    for name in args:
        if name not in known:
            names = ", ".join(p.name for p in spec.params) or "none"
            raise OpShapeIssue(f"{spec.name} has no parameter {name!r}",
                               f"its parameters are: {names}")
    for p in spec.params:
        if p.name not in args:
            if p.required:
                raise OpShapeIssue(f"{spec.name} needs the parameter {p.name!r}",
                                   f"write e.g. {spec.name}(x, {p.name}=...)")
            continue
        value = args[p.name]
        if value < p.minimum or (p.maximum is not None and value > p.maximum):
            bound = (f"between {p.minimum} and {p.maximum}" if p.maximum is not None
                     else f"at least {p.minimum}")
            raise OpShapeIssue(f"{spec.name}: {p.name}={value} is out of range",
                               f"{p.name} must be {bound}")


def infer_shape(spec: OpSpec, in_shapes: tuple[Shape, ...], given: Args) -> Shape:
    """Defaults filled in, then the op's shape rule (which validates the arguments)."""
    return spec.shape(tuple(in_shapes), resolve_args(spec, given))
