"""Shared arithmetic and the `define` helper used by every op family file.

The shape arithmetic is written once here so that every conv-like op agrees with PyTorch's
formula, `floor((H + 2p - d*(k-1) - 1) / s) + 1`, and so that an op that would shrink a tensor
below one pixel is reported by the compiler instead of crashing at build time.
No torch import here: this module is part of the compiler front end.
"""

from __future__ import annotations

from typing import Any, Callable

from dasc.ops.registry import (
    REGISTRY, Args, CostRule, OpShapeIssue, OpSpec, ParamSpec, Shape, ShapeRule, Style,
    check_args,
)


def P(name: str, default: int | None = None, *, required: bool = False, minimum: int = 1,
      maximum: int | None = None, doc: str = "") -> ParamSpec:
    """A ParamSpec with the minimum most op parameters want (sizes and strides start at 1)."""
    return ParamSpec(name, default, required, minimum, maximum, doc)


def FLAG(name: str, default: int, doc: str = "") -> ParamSpec:
    """A 0/1 switch such as `bias` or `affine`."""
    return ParamSpec(name, default, False, 0, 1, doc)


def same_pad(k: int, dilation: int = 1) -> int:
    """"Same" padding as DARTS and NAS-Bench-201 write it: d*(k-1)//2 (exact for odd k)."""
    return dilation * (k - 1) // 2


def out_len(n: int, k: int, stride: int, pad: int, dilation: int, op: str) -> int:
    """PyTorch's output length of a conv/pool window; below one pixel is an OpShapeIssue."""
    span = n + 2 * pad - dilation * (k - 1) - 1
    if span < 0:
        eff = dilation * (k - 1) + 1
        raise OpShapeIssue(
            f"{op}: a window of {eff} pixels does not fit an input of size {n} "
            f"(padding {pad})",
            "the tensor is too small here: use a smaller kernel, fewer stride-2 layers, "
            "or a larger input")
    return span // stride + 1


def out_hw(x: Shape, k: int, stride: int, pad: int, dilation: int, op: str) -> tuple[int, int]:
    return (out_len(x.h, k, stride, pad, dilation, op),
            out_len(x.w, k, stride, pad, dilation, op))


def channels(x: Shape, args: Args, key: str = "c") -> int:
    """The output channels: the argument if given, else the input's (the `c=<same>` default)."""
    value = args.get(key)
    return x.c if value is None else int(value)


def lazy(fn: Callable[[Any, tuple[Shape, ...], dict[str, int]], Any]):
    """Wrap a builder so that `dasc.runtime.layers` (and torch) load only when a module is built."""

    def build(in_shapes: tuple[Shape, ...], args: Args):
        from dasc.runtime import layers

        return fn(layers, tuple(in_shapes), dict(args))

    build.__doc__ = fn.__doc__
    return build


def _checked(name: str, arity: int, params: tuple[ParamSpec, ...], rule: ShapeRule) -> ShapeRule:
    """The shape rule with arity and argument validation in front of it."""

    def shape(in_shapes: tuple[Shape, ...], args: Args) -> Shape:
        n = len(in_shapes)
        if arity >= 0 and n != arity:
            raise OpShapeIssue(f"{name} takes {arity} tensor input(s), got {n}",
                               f"call it as {name}(x, ...)")
        if arity < 0 and n < 1:
            raise OpShapeIssue(f"{name} needs at least one tensor input",
                               f"call it as {name}(a, b, ...)")
        check_args(_SPECS[name], args)
        return rule(tuple(in_shapes), args)

    return shape


_SPECS: dict[str, OpSpec] = {}


def define(name: str, arity: int, params: tuple[ParamSpec, ...], *, shape: ShapeRule,
           params_count: CostRule, macs: CostRule, build, style: Style,
           skip: bool = False, zero: bool = False, doc: str = "") -> OpSpec:
    """Create and register one built-in op; the shape rule is wrapped with argument checks."""
    spec = OpSpec(name=name, arity=arity, params=tuple(params),
                  shape=_checked(name, arity, tuple(params), shape),
                  params_count=params_count, macs=macs, build=build,
                  skip=skip, zero=zero, style=style, doc=doc)
    _SPECS[name] = spec
    return REGISTRY.register(spec)


def zero_cost(in_shapes: tuple[Shape, ...], args: Args) -> int:
    """Ops without weights or multiply-accumulates (activations, pools, combinations)."""
    return 0


def bn_params(c: int, affine: int = 1) -> int:
    """BatchNorm2d parameters: weight and bias when affine; running stats are buffers."""
    return 2 * c if affine else 0


# Drawing styles, one per family, so a rendered space reads at a glance.
STYLE_CONV = Style(color="#4c72b0", shape="box")
STYLE_NORM = Style(color="#8c8c8c", shape="box")
STYLE_ACT = Style(color="#dd8452", shape="ellipse")
STYLE_POOL = Style(color="#55a868", shape="hexagon")
STYLE_SKIP = Style(color="#937860", shape="ellipse")
STYLE_ZERO = Style(color="#c0c0c0", shape="plaintext")
STYLE_HEAD = Style(color="#8172b3", shape="box3d")
STYLE_DARTS = Style(color="#c44e52", shape="box")
STYLE_NB201 = Style(color="#da8bc3", shape="box")
STYLE_MOBILE = Style(color="#64b5cd", shape="component")
STYLE_ADAPTER = Style(color="#ccb974", shape="cds")
STYLE_COMBINE = Style(color="#333333", shape="circle")
