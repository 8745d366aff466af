"""The torch modules behind the built-in ops (`dasc.ops`), built by `OpSpec.build`.

Why these exist rather than inline `nn.Sequential`s:

* The DARTS ops mirror the reference code's module structure (`ReLUConvBN.op`, `SepConv.op`,
  `DilConv.op`, `FactorizedReduce.conv_1/conv_2/bn`), so a derived network has the same
  parameters in the same order and state_dict keys line up with quark0/darts checkpoints.
* Every tensor stays 4-D ([N, C, H, W]), matching `dasc.ops.registry.Shape`: `Linear4d`
  returns [N, n, 1, 1], so shape rules hold for every op and ops compose freely; the runtime
  flattens the network output into [N, classes] logits.
* No in-place activations: in a supernet one input feeds several candidates.
* Forward passes branch only on constructor-time attributes, so torch.fx can trace them and
  ONNX export sees a static graph.

Only the runtime imports this module (it imports torch); the compiler never does.
"""

from __future__ import annotations

from collections import OrderedDict

from contextlib import contextmanager

import torch
from torch import nn

from dasc.runtime.fastconv import DepthwiseConv2d, pointwise_bn


# ---------------------------------------------------------------- plain layers
def conv2d(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
           groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=bias)


def batch_norm(c: int, affine: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=affine)


def relu() -> nn.ReLU:
    return nn.ReLU(inplace=False)


def relu6() -> nn.ReLU6:
    return nn.ReLU6(inplace=False)


def max_pool(k: int, stride: int, padding: int) -> nn.MaxPool2d:
    return nn.MaxPool2d(k, stride=stride, padding=padding)


def avg_pool(k: int, stride: int, padding: int) -> nn.AvgPool2d:
    """Padding is left out of the mean, as in DARTS and NAS-Bench-201."""
    return nn.AvgPool2d(k, stride=stride, padding=padding, count_include_pad=False)


class Identity(nn.Module):
    """Pass-through (identity and skip_connect at stride 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Average over H and W, keeping [N, C, 1, 1]."""

    def __init__(self) -> None:
        super().__init__(1)


class Linear4d(nn.Linear):
    """nn.Linear on the flattened [C, H, W] input, returning [N, n, 1, 1].

    A subclass (not a wrapper) so its parameters are `weight`/`bias` and it counts as a
    Linear for anything that inspects module types (MAC counters, quantizers).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.flatten(x, 1))[:, :, None, None]


class Adapter(nn.Sequential):
    """The compiler-inserted channel projection: 1x1 conv without bias, then affine BN.

    The BN keeps the projected branch on the same scale as its BN-terminated siblings in a
    sum; the cost is cin*cout + 2*cout parameters.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(OrderedDict(conv=nn.Conv2d(cin, cout, 1, bias=False),
                                     bn=nn.BatchNorm2d(cout, affine=True)))


class Sum(nn.Module):
    """Elementwise sum of any number of equal-shape tensors."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Channel concatenation."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(xs), dim=1)


# ---------------------------------------------------------------- DARTS / NAS-Bench-201
class Zero(nn.Module):
    """DARTS's `none`: zeros of the (strided) input's shape, kept in the graph so that a
    supernet's mixture can weigh it like any other candidate."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


@contextmanager
def frozen_bn_stats(module: nn.Module):
    """Momentum 0 while a checkpointed forward is recomputed: running stats update once."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _after_first(seq: nn.Sequential, x: torch.Tensor, recompute_pointwise: bool = False) -> torch.Tensor:
    """Run `seq` without its leading ReLU.

    With `recompute_pointwise`, each 1×1 conv + BN pair keeps only its input for the backward
    pass and recomputes the conv output there: 1×1 convs are the cheapest ops of a DARTS cell
    but their outputs (BN's saved inputs) are a large share of a super-network's memory.
    """
    modules = list(seq)[1:]
    i = 0
    while i < len(modules):
        m = modules[i]
        pair = (recompute_pointwise and torch.is_grad_enabled() and i + 1 < len(modules)
                and isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                and isinstance(modules[i + 1], nn.BatchNorm2d))
        if pair:
            x = pointwise_bn(m, modules[i + 1], x)
            i += 2
        else:
            x = m(x)
            i += 1
    return x


class _ReluLed(nn.Module):
    """An op whose `self.op` Sequential starts with a ReLU that a mixed op may share."""

    recompute_pointwise = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def forward_from_relu(self, relu_x: torch.Tensor) -> torch.Tensor:
        """The op after its leading ReLU, so a mixed op can share one ReLU per input."""
        return _after_first(self.op, relu_x, self.recompute_pointwise)


class ReLUConvBN(_ReluLed):
    """ReLU, Conv2d without bias, BatchNorm (DARTS/NB201 `ReLUConvBN`, also `nor_conv_*`)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int,
                 dilation: int = 1, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )



class DilConv(_ReluLed):
    """DARTS dilated separable conv: ReLU, depthwise kxk (dilated, strided), 1x1, BN."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int, dilation: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(cin, k, stride=stride, padding=padding, dilation=dilation),
            nn.Conv2d(cin, cout, 1, padding=0, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )



class SepConv(_ReluLed):
    """DARTS separable conv: the ReLU-depthwise-pointwise-BN unit twice; only the first
    depthwise conv is strided and only the last pointwise conv changes channels."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, k, stride=stride, padding=padding, groups=cin, bias=False),
            nn.Conv2d(cin, cin, 1, padding=0, bias=False),
            nn.BatchNorm2d(cin, affine=affine),
            nn.ReLU(inplace=True),  # BN's backward needs its input, not its output: no copy
            nn.Conv2d(cin, cin, k, stride=1, padding=padding, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, padding=0, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )



class FactorizedReduce(nn.Module):
    """DARTS FactorizedReduce: halves H and W with two 1x1 stride-2 convs, the second on the
    input shifted by one pixel, so together they see every pixel; needs even H, W and cout."""

    def __init__(self, cin: int, cout: int, affine: bool = True) -> None:
        super().__init__()
        assert cout % 2 == 0, "FactorizedReduce needs an even output channel count"
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_relu(self.relu(x))

    def forward_from_relu(self, relu_x: torch.Tensor) -> torch.Tensor:
        """The op after its leading ReLU, so a mixed op can share one ReLU per input."""
        out = torch.cat([self.conv_1(relu_x), self.conv_2(relu_x[:, :, 1:, 1:])], dim=1)
        return self.bn(out)


# ---------------------------------------------------------------- MobileNet
def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=False))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: expand (absent when e == 1), depthwise, linear project;
    the input is added back when stride == 1 and the channel count is kept."""

    def __init__(self, cin: int, cout: int, k: int, e: int, stride: int) -> None:
        super().__init__()
        hidden = cin * e
        self.expand = None if e == 1 else _conv_bn(cin, hidden, 1, 1, 1, act=True)
        self.depthwise = _conv_bn(hidden, hidden, k, stride, hidden, act=True)
        self.project = _conv_bn(hidden, cout, 1, 1, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y
