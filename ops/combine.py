"""`sum` and `concat` of any number of tensors (the cell's node and output combinations).

`sum` needs identical shapes: the compiler's adapter pass projects differing channel counts
before this rule runs, so a mismatch reaching it is spatial (or adapters were not inserted)
and the hint says so. `concat` joins along channels and needs equal height and width.
"""

from __future__ import annotations

from dasc.ops._common import STYLE_COMBINE, define, lazy, zero_cost
from dasc.ops.registry import Args, OpShapeIssue, Shape


def _listing(s: tuple[Shape, ...]) -> str:
    return ", ".join(str(x) for x in s)


def _sum_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    first = s[0]
    if any((x.h, x.w) != (first.h, first.w) for x in s):
        raise OpShapeIssue(
            f"sum of tensors with different spatial sizes: {_listing(s)}",
            "give every input the same height and width (reduce the larger ones with a "
            "stride-2 op); only channel differences are bridged by adapters")
    if any(x.c != first.c for x in s):
        raise OpShapeIssue(
            f"sum of tensors with different channel counts: {_listing(s)}",
            "channel differences are bridged by 1x1-conv adapters that the compiler inserts; "
            "outside that pass, project the inputs to one channel count (e.g. adapter(x, c))")
    return first


def _concat_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    first = s[0]
    if any((x.h, x.w) != (first.h, first.w) for x in s):
        raise OpShapeIssue(
            f"concat of tensors with different spatial sizes: {_listing(s)}",
            "concat joins channels and needs equal height and width; reduce the larger "
            "inputs with a stride-2 op first")
    return Shape(sum(x.c for x in s), first.h, first.w)


define("sum", -1, (), shape=_sum_shape, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.Sum()), style=STYLE_COMBINE,
       doc="Elementwise sum of equal-shape inputs.")

define("concat", -1, (), shape=_concat_shape, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.Concat()), style=STYLE_COMBINE,
       doc="Channel concatenation of inputs with equal height and width.")
