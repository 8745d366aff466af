"""NAS-Bench-201's TinyNetwork, rebuilt in plain PyTorch from the benchmark's definition.

Why: the oracle for `nb201.das` (Dong & Yang, ICLR 2020, Sec. 2.1). The network:

* stem: conv3×3 (3 → C=16, no bias) + BN;
* three stages of N=5 cells at C, 2C, 4C channels, separated by a residual block
  (ReLU-conv3×3 stride 2-BN, ReLU-conv3×3-BN; shortcut: 2×2 avg-pool stride 2 then conv1×1, no BN);
* a cell is a 4-node DAG: node j = Σ_{i<j} op_{i→j}(node i), output node 3; every op keeps C:
  `nor_conv_kxk` = ReLU-conv k×k (no bias)-BN, `avg_pool_3x3` (stride 1, padding excluded from
  the average), `skip_connect` = identity, `none` = zeros;
* head: BN + ReLU ("lastact"), global average pool, linear.

Architecture strings look like `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...~0|...~1|...~2|`:
`+` separates nodes 1..3, each `op~i` names the op on the edge from node i.
"""
from __future__ import annotations

import torch.nn as nn

__all__ = ["NB201_OPS", "parse_nb201", "format_nb201", "build_nb201_network", "TinyNetwork",
           "InferCell", "ResNetBasicBlock"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")



def parse_nb201(text: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Parse an architecture string into ((op, src), ...) for nodes 1, 2, 3 — without eval.

    Node j must list exactly the edges from nodes 0..j-1, each once (the benchmark's cell is a
    complete DAG); ops must be in `NB201_OPS`. Raises ValueError naming the offending part.
    """
    text = text.strip()
    nodes = []
    for j, part in enumerate(text.split("+"), start=1):
        if not (part.startswith("|") and part.endswith("|") and len(part) > 2):
            raise ValueError(f"nb201: node {j} {part!r} must look like |op~i|op~i|")
        edges = []
        for item in part[1:-1].split("|"):
            op, sep, src = item.partition("~")
            if not sep or not src.isdigit():
                raise ValueError(f"nb201: edge {item!r} of node {j} must be op~input")
            if op not in NB201_OPS:
                raise ValueError(f"nb201: unknown op {op!r}; known: {', '.join(NB201_OPS)}")
            edges.append((op, int(src)))
        if sorted(s for _, s in edges) != list(range(j)):
            raise ValueError(f"nb201: node {j} must have one edge from each of nodes 0..{j - 1}")
        nodes.append(tuple(sorted(edges, key=lambda e: e[1])))
    if len(nodes) != 3:
        raise ValueError(f"nb201: a cell has 3 computed nodes, got {len(nodes)}")
    return tuple(nodes)


def format_nb201(arch) -> str:
    return "+".join("|" + "|".join(f"{op}~{src}" for op, src in node) + "|" for node in arch)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, padding):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_op(name: str, C: int) -> nn.Module:
    """One NB201 op at C channels, stride 1 (all ops inside a cell keep the shape)."""
    if name == "nor_conv_3x3":
        return ReLUConvBN(C, C, 3, 1, 1)
    if name == "nor_conv_1x1":
        return ReLUConvBN(C, C, 1, 1, 0)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return Identity()
    if name == "none":
        return Zero()
    raise ValueError(f"unknown NB201 op {name!r}")


class InferCell(nn.Module):
    def __init__(self, arch, C: int):
        super().__init__()
        self.arch = arch
        self.edges = nn.ModuleList(make_op(op, C) for node in arch for op, _ in node)

    def forward(self, x):
        nodes, k = [x], 0
        for node in self.arch:
            total = 0
            for _, src in node:
                total = total + self.edges[k](nodes[src])
                k += 1
            nodes.append(total)
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """Stride-2 residual block between stages (fixed, not searched)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                        nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    def __init__(self, arch, C: int = 16, N: int = 5, classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        c = C
        for stage in range(3):
            if stage:
                self.cells.append(ResNetBasicBlock(c, 2 * c))
                c *= 2
            for _ in range(N):
                self.cells.append(InferCell(arch, c))
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


def build_nb201_network(arch, C: int = 16, N: int = 5, classes: int = 10) -> TinyNetwork:
    """TinyNetwork for an architecture given as a string or as `parse_nb201`'s tuple."""
    if isinstance(arch, str):
        arch = parse_nb201(arch)
    return TinyNetwork(arch, C=C, N=N, classes=classes)
