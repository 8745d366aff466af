"""Generic pooling: `max_pool(x, k, stride)` and `avg_pool(x, k, stride)`.

Padding is (k-1)//2 as in DARTS and NAS-Bench-201, and average pooling excludes the padding
from the mean (count_include_pad=False), so `avg_pool(x, k=3)` is exactly their avg_pool_3x3
and `avg_pool(x, k=2, stride=2)` is NAS-Bench-201's residual-block downsampling.
"""

from __future__ import annotations

from dasc.ops._common import P, STYLE_POOL, define, lazy, out_hw, zero_cost
from dasc.ops.registry import Args, Shape


def _pool_shape(op: str):
    def shape(s: tuple[Shape, ...], a: Args) -> Shape:
        k = a["k"]
        h, w = out_hw(s[0], k, a["stride"], (k - 1) // 2, 1, op)
        return Shape(s[0].c, h, w)

    return shape


define("max_pool", 1, (P("k", 3), P("stride", 1)),
       shape=_pool_shape("max_pool"), params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.max_pool(a["k"], a["stride"], (a["k"] - 1) // 2)),
       style=STYLE_POOL, doc="MaxPool2d, padding (k-1)//2.")

define("avg_pool", 1, (P("k", 3), P("stride", 1)),
       shape=_pool_shape("avg_pool"), params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.avg_pool(a["k"], a["stride"], (a["k"] - 1) // 2)),
       style=STYLE_POOL, doc="AvgPool2d, padding (k-1)//2, count_include_pad=False.")
