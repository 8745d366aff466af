"""Plain building blocks: conv, bn, relu, relu6, identity, gap, linear, and the compiler's adapter.

These are what stems, heads and composite ops are written with. Conventions shared with the
DARTS and NAS-Bench-201 code: convolutions have no bias unless asked, padding is "same"
(d*(k-1)//2), BatchNorm is affine. Every tensor stays 4-D ([N, C, H, W]) in the built network,
so `linear` produces [N, n, 1, 1]; the runtime flattens the network output into logits.
"""

from __future__ import annotations

from dasc.ops._common import (
    FLAG, P, STYLE_ACT, STYLE_ADAPTER, STYLE_CONV, STYLE_HEAD, STYLE_NORM, STYLE_SKIP,
    bn_params, channels, define, lazy, out_hw, same_pad, zero_cost,
)
from dasc.ops.registry import Args, OpShapeIssue, Shape


# ---------------------------------------------------------------- conv
def _conv_shape(s: tuple[Shape, ...], a: Args) -> Shape:
    x = s[0]
    c, k, g, d = channels(x, a), a["k"], a["groups"], a["dilation"]
    if x.c % g or c % g:
        raise OpShapeIssue(
            f"conv: groups={g} must divide both the input channels ({x.c}) and the output "
            f"channels ({c})",
            "pick groups among the common divisors, e.g. groups=1, or groups=C for a "
            "depthwise conv with c=C")
    h, w = out_hw(x, k, a["stride"], same_pad(k, d), d, "conv")
    return Shape(c, h, w)


def _conv_weights(s: tuple[Shape, ...], a: Args) -> int:
    x = s[0]
    return channels(x, a) * (x.c // a["groups"]) * a["k"] * a["k"]


def _conv_params(s: tuple[Shape, ...], a: Args) -> int:
    return _conv_weights(s, a) + (channels(s[0], a) if a["bias"] else 0)


def _conv_macs(s: tuple[Shape, ...], a: Args) -> int:
    y = _conv_shape(s, a)
    return _conv_weights(s, a) * y.h * y.w


@lazy
def _conv_build(L, s, a):
    """nn.Conv2d with "same" padding."""
    x = s[0]
    k, d = a["k"], a["dilation"]
    return L.conv2d(x.c, channels(x, a), k, a["stride"], same_pad(k, d), d, a["groups"],
                    bool(a["bias"]))


define("conv", 1, (P("c"), P("k", 3), P("stride", 1), P("dilation", 1), P("groups", 1),
                   FLAG("bias", 0)),
       shape=_conv_shape, params_count=_conv_params, macs=_conv_macs, build=_conv_build,
       style=STYLE_CONV,
       doc="Conv2d, 'same' padding d*(k-1)//2, no bias unless bias=1; c defaults to the input's.")


# ---------------------------------------------------------------- bn, activations, identity
def _same(s: tuple[Shape, ...], a: Args) -> Shape:
    return s[0]


define("bn", 1, (FLAG("affine", 1),),
       shape=_same, params_count=lambda s, a: bn_params(s[0].c, a["affine"]), macs=zero_cost,
       build=lazy(lambda L, s, a: L.batch_norm(s[0].c, bool(a["affine"]))),
       style=STYLE_NORM, doc="BatchNorm2d; weight and bias (2C parameters) when affine.")

define("relu", 1, (), shape=_same, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.relu()), style=STYLE_ACT, doc="ReLU (not in place).")

define("relu6", 1, (), shape=_same, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.relu6()), style=STYLE_ACT, doc="ReLU6 (not in place).")

define("identity", 1, (), shape=_same, params_count=zero_cost, macs=zero_cost,
       build=lazy(lambda L, s, a: L.Identity()), style=STYLE_SKIP, skip=True,
       doc="Passes the input through; a skip op for path constraints.")


# ---------------------------------------------------------------- head
define("gap", 1, (), shape=lambda s, a: Shape(s[0].c, 1, 1), params_count=zero_cost,
       macs=zero_cost, build=lazy(lambda L, s, a: L.GlobalAvgPool()), style=STYLE_HEAD,
       doc="Global average pooling to [C, 1, 1].")


def _linear_in(s: tuple[Shape, ...]) -> int:
    x = s[0]
    return x.c * x.h * x.w


define("linear", 1, (P("n", required=True), FLAG("bias", 1)),
       shape=lambda s, a: Shape(a["n"], 1, 1),
       params_count=lambda s, a: a["n"] * _linear_in(s) + (a["n"] if a["bias"] else 0),
       macs=lambda s, a: a["n"] * _linear_in(s),
       build=lazy(lambda L, s, a: L.Linear4d(_linear_in(s), a["n"], bool(a["bias"]))),
       style=STYLE_HEAD,
       doc="Fully connected on the flattened [C, H, W] input; output [n, 1, 1].")


# ---------------------------------------------------------------- adapter
def _adapter_params(s: tuple[Shape, ...], a: Args) -> int:
    c = channels(s[0], a)
    return s[0].c * c + bn_params(c)


define("adapter", 1, (P("c"),),
       shape=lambda s, a: Shape(channels(s[0], a), s[0].h, s[0].w),
       params_count=_adapter_params,
       macs=lambda s, a: s[0].c * channels(s[0], a) * s[0].h * s[0].w,
       build=lazy(lambda L, s, a: L.Adapter(s[0].c, channels(s[0], a))),
       style=STYLE_ADAPTER,
       doc="Compiler-inserted channel projection: 1x1 conv (no bias) + affine BatchNorm; "
           "costs cin*c + 2c parameters and cin*c*H*W MACs.")
