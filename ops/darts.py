"""The DARTS operation set (Liu et al., 2019) and the cell pre-processing ops.

Each op reproduces the module of the DARTS reference code (quark0/darts, operations.py) layer
for layer, so a derived network has the reference parameter count:

* `none`: multiply by zero; at stride s it keeps every s-th pixel (x[:, :, ::s, ::s] * 0).
* `skip_connect`: identity at stride 1, FactorizedReduce(C, C) at stride 2.
* `max_pool_3x3`, `avg_pool_3x3`: 3x3 window, padding 1, average excludes padding. The
  evaluation network has no BatchNorm after pooling (the search network's MixedOp adds an
  affine-free one; that is the runtime's business, it has no parameters).
* `sep_conv_KxK`: (ReLU, depthwise KxK at stride s, 1x1 C->C, BN) then (ReLU, depthwise KxK,
  1x1 C->c, BN): the separable conv applied twice.
* `dil_conv_KxK`: ReLU, depthwise KxK dilation 2 at stride s, 1x1 C->c, BN.
* `fact_reduce(x, c)`: ReLU, two 1x1 stride-2 convs to c/2 (the second on x shifted by one
  pixel), concatenated, BN(c).
* `relu_conv_bn(x, c, k, stride, dilation)`: ReLU, conv without bias, BN.

Pools, `skip_connect` and `none` keep the input's channels (DARTS always has C_in == C_out for
cell ops); the convolutions accept `c`. When candidates of one choice disagree on channels the
compiler's adapter pass reconciles them. `affine=0` gives the search network's BatchNorm.
"""

from __future__ import annotations

from dasc.ops._common import (
    FLAG, P, STYLE_DARTS, STYLE_POOL, STYLE_SKIP, STYLE_ZERO, bn_params, channels, define,
    lazy, out_hw, same_pad, zero_cost,
)
from dasc.ops.registry import Args, OpShapeIssue, Shape

STRIDE = P("stride", 1)
C = P("c")
AFFINE = FLAG("affine", 1)


# ---------------------------------------------------------------- none
def _none_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    x, st = s[0], a["stride"]
    return Shape(x.c, -(-x.h // st), -(-x.w // st))


define("none", 1, (STRIDE,), shape=_none_shape, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.Zero(a["stride"])), zero=True, style=STYLE_ZERO,
       doc="DARTS Zero: the edge carries nothing; spatially strided at stride > 1.")


# ---------------------------------------------------------------- factorized reduce
def _fr_shape(x: Shape, c: int, op: str) -> Shape:
    if c % 2:
        raise OpShapeIssue(f"{op}: FactorizedReduce needs an even channel count, got {c}",
                           "it concatenates two convolutions of c/2 channels each; "
                           "use an even channel count")
    if x.h % 2 or x.w % 2:
        raise OpShapeIssue(
            f"{op}: FactorizedReduce needs an even height and width, got {x.h}x{x.w}",
            "its two stride-2 branches (one shifted by a pixel) only line up on even sizes, "
            "as in the DARTS code; change the input size or reduce at another depth")
    return Shape(c, x.h // 2, x.w // 2)


def _fr_params(cin: int, c: int, affine: int) -> int:
    return 2 * cin * (c // 2) + bn_params(c, affine)


define("fact_reduce", 1, (C, AFFINE),
       shape=lambda s, a: _fr_shape(s[0], channels(s[0], a), "fact_reduce"),
       params_count=lambda s, a: _fr_params(s[0].c, channels(s[0], a), a["affine"]),
       macs=lambda s, a: s[0].c * channels(s[0], a) * (s[0].h // 2) * (s[0].w // 2),
       build=lazy(lambda L, s, a: L.FactorizedReduce(s[0].c, channels(s[0], a),
                                                     bool(a["affine"]))),
       style=STYLE_DARTS, doc="DARTS FactorizedReduce: halves H and W, projects to c (even).")


# ---------------------------------------------------------------- skip_connect
def _skip_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    x = s[0]
    if a["stride"] == 1:
        return x
    return _fr_shape(x, x.c, "skip_connect(stride=2)")


define("skip_connect", 1, (P("stride", 1, maximum=2), AFFINE),
       shape=_skip_shape,
       params_count=lambda s, a: 0 if a["stride"] == 1 else _fr_params(s[0].c, s[0].c,
                                                                        a["affine"]),
       macs=lambda s, a: 0 if a["stride"] == 1 else s[0].c * s[0].c * (s[0].h // 2)
       * (s[0].w // 2),
       build=lazy(lambda L, s, a: L.Identity() if a["stride"] == 1
                  else L.FactorizedReduce(s[0].c, s[0].c, bool(a["affine"]))),
       skip=True, style=STYLE_SKIP,
       doc="Identity at stride 1; FactorizedReduce(C, C) at stride 2 (DARTS).")


# ---------------------------------------------------------------- 3x3 pools
def _pool3_shape(op: str):
    def shape(s: tuple[Shape, ...], a: Args) -> Shape:
        h, w = out_hw(s[0], 3, a["stride"], 1, 1, op)
        return Shape(s[0].c, h, w)

    return shape


define("max_pool_3x3", 1, (STRIDE,), shape=_pool3_shape("max_pool_3x3"),
       params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.max_pool(3, a["stride"], 1)), style=STYLE_POOL,
       doc="MaxPool2d(3, stride, padding=1).")

define("avg_pool_3x3", 1, (STRIDE,), shape=_pool3_shape("avg_pool_3x3"),
       params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.avg_pool(3, a["stride"], 1)), style=STYLE_POOL,
       doc="AvgPool2d(3, stride, padding=1, count_include_pad=False).")


# ---------------------------------------------------------------- separable / dilated convs
def _dw_shape(x: Shape, k: int, stride: int, dilation: int, c: int, op: str) -> Shape:
    h, w = out_hw(x, k, stride, same_pad(k, dilation), dilation, op)
    return Shape(c, h, w)


def _sep(k: int) -> None:
    name = f"sep_conv_{k}x{k}"

    def shape(s: tuple[Shape, ...], a: Args) -> Shape:
        return _dw_shape(s[0], k, a["stride"], 1, channels(s[0], a), name)

    def params(s: tuple[Shape, ...], a: Args) -> int:
        cin, c = s[0].c, channels(s[0], a)
        first = cin * k * k + cin * cin + bn_params(cin, a["affine"])
        second = cin * k * k + cin * c + bn_params(c, a["affine"])
        return first + second

    def macs(s: tuple[Shape, ...], a: Args) -> int:
        y, cin = shape(s, a), s[0].c
        return (2 * cin * k * k + cin * cin + cin * y.c) * y.h * y.w

    define(name, 1, (STRIDE, C, AFFINE), shape=shape, params_count=params, macs=macs,
           build=lazy(lambda L, s, a: L.SepConv(s[0].c, channels(s[0], a), k, a["stride"],
                                                same_pad(k), bool(a["affine"]))),
           style=STYLE_DARTS, doc=f"DARTS SepConv, {k}x{k}: two stacked ReLU-dw-pw-BN blocks.")


def _dil(k: int) -> None:
    name = f"dil_conv_{k}x{k}"

    def shape(s: tuple[Shape, ...], a: Args) -> Shape:
        return _dw_shape(s[0], k, a["stride"], 2, channels(s[0], a), name)

    def params(s: tuple[Shape, ...], a: Args) -> int:
        cin, c = s[0].c, channels(s[0], a)
        return cin * k * k + cin * c + bn_params(c, a["affine"])

    def macs(s: tuple[Shape, ...], a: Args) -> int:
        y, cin = shape(s, a), s[0].c
        return (cin * k * k + cin * y.c) * y.h * y.w

    define(name, 1, (STRIDE, C, AFFINE), shape=shape, params_count=params, macs=macs,
           build=lazy(lambda L, s, a: L.DilConv(s[0].c, channels(s[0], a), k, a["stride"],
                                                same_pad(k, 2), 2, bool(a["affine"]))),
           style=STYLE_DARTS, doc=f"DARTS DilConv, {k}x{k} dilation 2: ReLU-dw-pw-BN.")


for _k in (3, 5):
    _sep(_k)
    _dil(_k)


# ---------------------------------------------------------------- relu_conv_bn
def _rcb_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    return _dw_shape(s[0], a["k"], a["stride"], a["dilation"], channels(s[0], a),
                     "relu_conv_bn")


def _rcb_weights(s: tuple[Shape, ...], a: Args) -> int:
    return s[0].c * channels(s[0], a) * a["k"] * a["k"]


def _rcb_macs(s: tuple[Shape, ...], a: Args) -> int:
    y = _rcb_shape(s, a)
    return _rcb_weights(s, a) * y.h * y.w


define("relu_conv_bn", 1, (C, P("k", 1), P("stride", 1), P("dilation", 1), AFFINE),
       shape=_rcb_shape,
       params_count=lambda s, a: _rcb_weights(s, a) + bn_params(channels(s[0], a),
                                                                a["affine"]),
       macs=_rcb_macs,
       build=lazy(lambda L, s, a: L.ReLUConvBN(
           s[0].c, channels(s[0], a), a["k"], a["stride"], same_pad(a["k"], a["dilation"]),
           a["dilation"], bool(a["affine"]))),
       style=STYLE_DARTS, doc="ReLU, Conv2d (no bias, 'same' padding), BatchNorm (DARTS/NB201).")
