"""MobileNetV2's inverted residual block (Sandler et al., 2018) as `mbconv(x, c, k, e, stride)`.

1x1 expansion to cin*e channels + BN + ReLU6 (left out when e == 1, as in MobileNetV2), then a
depthwise kxk conv at `stride` + BN + ReLU6, then a linear 1x1 projection to c + BN. The input
is added back when the block keeps the shape (stride 1 and cin == c). Every conv is bias-free
and every BN affine, so parameters are exactly the conv weights plus 2 per BN channel.
"""

from __future__ import annotations

from dasc.ops._common import P, STYLE_MOBILE, bn_params, channels, define, lazy, out_hw, same_pad
from dasc.ops.registry import Args, Shape


def _shape(s: tuple[Shape, ...], a: Args) -> Shape:
    k = a["k"]
    h, w = out_hw(s[0], k, a["stride"], same_pad(k), 1, "mbconv")
    return Shape(channels(s[0], a), h, w)


def _params(s: tuple[Shape, ...], a: Args) -> int:
    cin, c, k, e = s[0].c, channels(s[0], a), a["k"], a["e"]
    hid = cin * e
    expand = 0 if e == 1 else cin * hid + bn_params(hid)
    return expand + hid * k * k + bn_params(hid) + hid * c + bn_params(c)


def _macs(s: tuple[Shape, ...], a: Args) -> int:
    x, y = s[0], _shape(s, a)
    hid = x.c * a["e"]
    expand = 0 if a["e"] == 1 else x.c * hid * x.h * x.w
    return expand + (hid * a["k"] * a["k"] + hid * y.c) * y.h * y.w


define("mbconv", 1, (P("c"), P("k", 3), P("e", 6), P("stride", 1)),
       shape=_shape, params_count=_params, macs=_macs,
       build=lazy(lambda L, s, a: L.MBConv(s[0].c, channels(s[0], a), a["k"], a["e"],
                                           a["stride"])),
       style=STYLE_MOBILE,
       doc="MobileNetV2 inverted residual: expand e (skipped at e=1), depthwise k, project c.")
