"""The NAS-Bench-201 convolutions (Dong & Yang, 2020): `nor_conv_1x1`, `nor_conv_3x3`.

Both are ReLU, Conv2d (no bias, padding (k-1)/2), affine BatchNorm, as ReLUConvBN in
AutoDL-Projects' cell_operations.py. The rest of the NB201 set (`avg_pool_3x3`,
`skip_connect`, `none`) is shared with DARTS (ops/darts.py): at C_in == C_out and stride 1 the
two code bases build the same modules.
"""

from __future__ import annotations

from dasc.ops._common import FLAG, P, STYLE_NB201, bn_params, channels, define, lazy, out_hw
from dasc.ops.registry import Args, Shape


def _nor(k: int) -> None:
    name = f"nor_conv_{k}x{k}"
    pad = (k - 1) // 2

    def shape(s: tuple[Shape, ...], a: Args) -> Shape:
        h, w = out_hw(s[0], k, a["stride"], pad, 1, name)
        return Shape(channels(s[0], a), h, w)

    def weights(s: tuple[Shape, ...], a: Args) -> int:
        return s[0].c * channels(s[0], a) * k * k

    def macs(s: tuple[Shape, ...], a: Args) -> int:
        y = shape(s, a)
        return weights(s, a) * y.h * y.w

    define(name, 1, (P("stride", 1), P("c"), FLAG("affine", 1)), shape=shape,
           params_count=lambda s, a: weights(s, a) + bn_params(channels(s[0], a), a["affine"]),
           macs=macs,
           build=lazy(lambda L, s, a: L.ReLUConvBN(s[0].c, channels(s[0], a), k, a["stride"],
                                                   pad, 1, bool(a["affine"]))),
           style=STYLE_NB201, doc=f"NAS-Bench-201 ReLU-Conv{k}x{k}-BN.")


_nor(1)
_nor(3)
