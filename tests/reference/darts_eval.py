"""The DARTS CIFAR evaluation network, rebuilt from the paper's definitions in plain PyTorch.

Why: this is the oracle for "any DARTS genotype derived at C=36, 20 layers must be the very
network of the reference code". Everything here follows the DARTS paper (Liu et al., ICLR 2019,
Sec. 2 and App. A) and the documented behaviour of its reference implementation:

* ops (all ReLU-first, convolutions without bias, BatchNorm affine in the evaluation network):
  - `sep_conv_kxk`: (ReLU, depthwise k×k stride s, pointwise 1×1, BN) twice, stride only in the
    first depthwise conv, padding k//2;
  - `dil_conv_kxk`: ReLU, depthwise k×k dilation 2 stride s padding k-1, pointwise 1×1, BN;
  - `max_pool_3x3` / `avg_pool_3x3`: 3×3, padding 1, average excludes padding
    (`count_include_pad=False`); `skip_connect`: identity, or `FactorizedReduce` when the edge
    has stride 2; `none`: zeros (never in a derived genotype, supported for completeness);
* cell inputs are preprocessed to C channels: `FactorizedReduce(C_pp, C)` for s0 when the
  previous cell reduced (s0 is then at twice the resolution), else ReLU-conv1×1-BN; s1 always
  ReLU-conv1×1-BN; in a reduction cell the edges from the two cell inputs have stride 2;
* stem: conv3×3 (3 → 3C) + BN; reduction cells at `layers//3` and `2*layers//3`, where C
  doubles; the cell output concatenates the nodes in `*_concat` (2..5);
* head: global average pool + linear. The optional CIFAR auxiliary head sits after cell
  `2*layers//3` and is excluded from parameter counts (its parameters are named `auxiliary_*`).

Drop-path is a training regulariser with no parameters and is deliberately not modelled.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .genotype_text import Genotype, format_genotype, parse_genotype

__all__ = [
    "Genotype", "parse_genotype", "format_genotype", "load_genotype_file", "build_darts_network",
    "NetworkCIFAR", "make_op", "OP_NAMES", "SepConv", "DilConv", "FactorizedReduce", "ReLUConvBN",
    "Zero", "Identity",
]


class ReLUConvBN(nn.Sequential):
    """ReLU → conv (no bias) → BN: the 1×1 cell-input preprocessing of DARTS."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise dilated k×k → pointwise 1×1 → BN (one separable conv, dilation 2)."""

    def __init__(self, c_in, c_out, k, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, k, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked (ReLU, depthwise k×k, pointwise, BN); the paper applies separable convs twice."""

    def __init__(self, c_in, c_out, k, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, k, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, k, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve resolution without losing pixels: two stride-2 1×1 convs, the second on the input
    shifted by one pixel, each producing half the channels, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (subsampled when the edge has stride 2)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return nn.MaxPool2d(3, stride=stride, padding=1)


_OPS = {
    "none": lambda C, s, a: Zero(s),
    "max_pool_3x3": lambda C, s, a: _pool("max", s),
    "avg_pool_3x3": lambda C, s, a: _pool("avg", s),
    "skip_connect": lambda C, s, a: Identity() if s == 1 else FactorizedReduce(C, C, a),
    "sep_conv_3x3": lambda C, s, a: SepConv(C, C, 3, s, 1, a),
    "sep_conv_5x5": lambda C, s, a: SepConv(C, C, 5, s, 2, a),
    "sep_conv_7x7": lambda C, s, a: SepConv(C, C, 7, s, 3, a),
    "dil_conv_3x3": lambda C, s, a: DilConv(C, C, 3, s, 2, 2, a),
    "dil_conv_5x5": lambda C, s, a: DilConv(C, C, 5, s, 4, 2, a),
}
OP_NAMES = tuple(_OPS)


def make_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build one DARTS candidate op at C channels; `affine=False` is the search-time variant."""
    try:
        return _OPS[name](C, stride, affine)
    except KeyError:
        raise ValueError(f"unknown DARTS op {name!r}; known: {', '.join(OP_NAMES)}") from None


class EvalCell(nn.Module):
    """A derived cell: each intermediate node sums exactly two chosen (op, input) edges."""

    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, C) if reduction_prev else ReLUConvBN(c_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        if len(edges) % 2:
            raise ValueError("a DARTS genotype lists two edges per node")
        self.steps = len(edges) // 2
        self.indices = tuple(src for _, src in edges)
        for n, src in enumerate(self.indices):
            if not 0 <= src < 2 + n // 2:
                raise ValueError(f"edge {n} reads state {src}, which node {2 + n // 2} cannot see")
        for i in self.concat:
            if not 0 <= i < 2 + self.steps:
                raise ValueError(f"concat index {i} out of range")
        self.ops = nn.ModuleList(
            make_op(op, C, 2 if reduction and src < 2 else 1) for op, src in edges)
        self.multiplier = len(self.concat)

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            a, b = 2 * i, 2 * i + 1
            states.append(self.ops[a](states[self.indices[a]]) + self.ops[b](states[self.indices[b]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """The 8×8-input auxiliary classifier of the CIFAR evaluation network (training only)."""

    def __init__(self, C: int, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    """Stem → `layers` cells (two of them reducing) → GAP → linear."""

    def __init__(self, genotype: Genotype, C: int = 36, layers: int = 20, classes: int = 10,
                 auxiliary: bool = False, stem_multiplier: int = 3, in_channels: int = 3):
        super().__init__()
        self.layers = layers
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, C
        self.reduction_at = (layers // 3, 2 * layers // 3)
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = None
        for i in range(layers):
            reduction = i in self.reduction_at
            if reduction:
                c *= 2
            cell = EvalCell(genotype, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if i == 2 * layers // 3:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, classes)

    def forward_with_aux(self, x):
        """(logits, auxiliary logits or None); the aux head runs only in training mode."""
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == 2 * self.layers // 3 and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux

    def forward(self, x):
        return self.forward_with_aux(x)[0]


def build_darts_network(genotype: Genotype | str, C: int = 36, layers: int = 20, classes: int = 10,
                        auxiliary: bool = False) -> NetworkCIFAR:
    """The DARTS CIFAR evaluation network for a genotype (object, string or file path)."""
    if isinstance(genotype, Path) or (isinstance(genotype, str) and "Genotype" not in genotype):
        genotype = load_genotype_file(genotype)
    elif isinstance(genotype, str):
        genotype = parse_genotype(genotype)
    return NetworkCIFAR(genotype, C=C, layers=layers, classes=classes, auxiliary=auxiliary)


def load_genotype_file(path) -> Genotype:
    return parse_genotype(Path(path).read_text(encoding="utf-8"))
