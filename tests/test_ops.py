"""The op registry without torch: every built-in is registered, argument checking, shape and
cost rules on hand-computed examples, and shape errors that carry a message and a hint."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dasc.ops
from dasc.ops import REGISTRY, OpShapeIssue, Shape, infer_shape, resolve_args

DARTS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
         "dil_conv_3x3", "dil_conv_5x5"]
NB201 = ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none"]
OTHERS = ["conv", "bn", "relu", "relu6", "identity", "gap", "linear", "max_pool", "avg_pool",
          "adapter", "sum", "concat", "fact_reduce", "relu_conv_bn", "mbconv"]


def run(name, shapes, **args):
    spec = REGISTRY.get(name)
    full = resolve_args(spec, args)
    return infer_shape(spec, tuple(shapes), args), spec.params_count(tuple(shapes), full), \
        spec.macs(tuple(shapes), full)


def test_importing_ops_does_not_import_torch():
    code = "import dasc.ops, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_builtin_is_registered():
    for name in DARTS + NB201 + OTHERS:
        assert name in REGISTRY, name
    assert REGISTRY.get("identity").skip and REGISTRY.get("skip_connect").skip
    assert REGISTRY.get("none").zero
    assert not REGISTRY.get("sep_conv_3x3").skip
    assert REGISTRY.get("sum").arity == -1 and REGISTRY.get("concat").arity == -1
    for name in REGISTRY.names():
        spec = REGISTRY.get(name)
        assert spec.style.color.startswith("#") and spec.style.shape and spec.doc


def test_param_order_and_defaults():
    names = lambda op: [p.name for p in REGISTRY.get(op).params]  # noqa: E731
    assert names("conv") == ["c", "k", "stride", "dilation", "groups", "bias"]
    assert names("mbconv") == ["c", "k", "e", "stride"]
    assert names("sep_conv_3x3")[:2] == ["stride", "c"]
    assert names("max_pool_3x3") == ["stride"]
    assert resolve_args(REGISTRY.get("conv"), {"c": 8}) == {
        "c": 8, "k": 3, "stride": 1, "dilation": 1, "groups": 1, "bias": 0}
    assert REGISTRY.get("linear").param("n").required


def test_conv_shape_and_cost():
    out, params, macs = run("conv", [Shape(3, 32, 32)], c=16, k=3, stride=2)
    assert out == Shape(16, 16, 16)
    assert params == 16 * 3 * 9 and macs == 16 * 3 * 9 * 16 * 16
    out, params, macs = run("conv", [Shape(8, 7, 7)], c=4, k=3, groups=2, bias=1, dilation=2)
    assert out == Shape(4, 7, 7) and params == 4 * 4 * 9 + 4 and macs == 4 * 4 * 9 * 49


def test_darts_costs_match_reference_formulas():
    x = Shape(36, 32, 32)
    assert run("sep_conv_3x3", [x])[1] == 2 * (36 * 9 + 36 * 36 + 72)
    assert run("sep_conv_5x5", [x], stride=2)[0] == Shape(36, 16, 16)
    assert run("dil_conv_5x5", [x])[1] == 36 * 25 + 36 * 36 + 72
    assert run("dil_conv_3x3", [x], stride=2)[0] == Shape(36, 16, 16)
    assert run("skip_connect", [x]) == (x, 0, 0)
    assert run("skip_connect", [x], stride=2) == (Shape(36, 16, 16), 36 * 36 + 72,
                                                  36 * 36 * 256)
    assert run("none", [Shape(8, 7, 7)], stride=2) == (Shape(8, 4, 4), 0, 0)
    assert run("avg_pool_3x3", [Shape(8, 7, 7)], stride=2)[0] == Shape(8, 4, 4)
    assert run("fact_reduce", [Shape(48, 32, 32)], c=36) == (Shape(36, 16, 16),
                                                              48 * 36 + 72, 48 * 36 * 256)
    assert run("relu_conv_bn", [Shape(48, 32, 32)], c=36)[1] == 48 * 36 + 72
    assert run("sep_conv_3x3", [x], affine=0)[1] == 2 * (36 * 9 + 36 * 36)


def test_nb201_and_mobile_costs():
    x = Shape(16, 32, 32)
    assert run("nor_conv_3x3", [x]) == (x, 16 * 16 * 9 + 32, 16 * 16 * 9 * 1024)
    assert run("nor_conv_1x1", [x])[1] == 16 * 16 + 32
    out, params, _ = run("mbconv", [x], c=24, k=5, e=6, stride=2)
    assert out == Shape(24, 16, 16)
    assert params == 16 * 96 + 192 + 96 * 25 + 192 + 96 * 24 + 48
    assert run("mbconv", [x], e=1)[1] == 16 * 9 + 32 + 16 * 16 + 32


def test_head_and_combinations():
    assert run("gap", [Shape(64, 8, 8)])[0] == Shape(64, 1, 1)
    assert run("linear", [Shape(64, 1, 1)], n=10) == (Shape(10, 1, 1), 650, 640)
    assert run("linear", [Shape(4, 2, 2)], n=3, bias=0) == (Shape(3, 1, 1), 48, 48)
    assert run("concat", [Shape(4, 8, 8), Shape(6, 8, 8), Shape(1, 8, 8)])[0] == Shape(11, 8, 8)
    assert run("sum", [Shape(4, 8, 8)] * 3)[0] == Shape(4, 8, 8)
    assert run("adapter", [Shape(4, 8, 8)], c=6) == (Shape(6, 8, 8), 24 + 12, 24 * 64)
    assert run("max_pool", [Shape(4, 9, 9)], k=2, stride=2)[0] == Shape(4, 4, 4)
    assert run("avg_pool", [Shape(4, 8, 8)], k=2, stride=2)[0] == Shape(4, 4, 4)


@pytest.mark.parametrize("name, shapes, args, needle", [
    ("conv", [Shape(6, 8, 8)], {"c": 4, "groups": 3}, "groups"),
    ("conv", [Shape(6, 8, 8)], {"groups": 4}, "groups"),
    ("fact_reduce", [Shape(6, 8, 8)], {"c": 5}, "even channel"),
    ("fact_reduce", [Shape(6, 7, 8)], {"c": 4}, "even height"),
    ("skip_connect", [Shape(5, 8, 8)], {"stride": 2}, "even channel"),
    ("skip_connect", [Shape(4, 8, 8)], {"stride": 3}, "out of range"),
    ("sum", [Shape(6, 8, 8), Shape(4, 8, 8)], {}, "channel"),
    ("sum", [Shape(6, 8, 8), Shape(6, 4, 4)], {}, "spatial"),
    ("concat", [Shape(6, 8, 8), Shape(6, 4, 8)], {}, "spatial"),
    ("max_pool", [Shape(6, 1, 1)], {"k": 2}, "does not fit"),
    ("avg_pool", [Shape(6, 1, 1)], {"k": 4}, "does not fit"),
    ("conv", [Shape(6, 1, 5)], {"k": 4}, "does not fit"),
    ("conv", [Shape(6, 8, 8)], {"stride": 0}, "out of range"),
    ("conv", [Shape(6, 8, 8)], {"bias": 2}, "out of range"),
    ("conv", [Shape(6, 8, 8)], {"kernel": 3}, "no parameter"),
    ("linear", [Shape(6, 1, 1)], {}, "needs the parameter"),
    ("relu", [Shape(6, 8, 8), Shape(6, 8, 8)], {}, "takes 1"),
])
def test_shape_errors_have_message_and_hint(name, shapes, args, needle):
    with pytest.raises(OpShapeIssue) as info:
        infer_shape(REGISTRY.get(name), tuple(shapes), args)
    assert needle in info.value.message
    assert info.value.hint and str(info.value) == info.value.message


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError):
        REGISTRY.register(REGISTRY.get("conv"))
    assert dasc.ops.REGISTRY is REGISTRY


# ---------------------------------------------------------------- whole-network fidelity
# Costs summed over networks composed by hand from the op rules, against published numbers:
# DARTS V2 at C=36, 20 layers has 3,349,342 parameters (train.py's "param size = 3.349342MB",
# auxiliary head excluded) and about 528M MACs; NAS-Bench-201 networks range from 0.073306M
# parameters / 7.78M MACs (all skip) to 1.531546M / 220.12M (all nor_conv_3x3).

def _tally():
    tot = [0, 0]

    def add(name, shapes, **args):
        out, params, macs = run(name, shapes, **args)
        tot[0] += params
        tot[1] += macs
        return out

    return tot, add


DARTS_V2_NORMAL = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                   ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
                   ("skip_connect", 0), ("dil_conv_3x3", 2)]
DARTS_V2_REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                   ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
                   ("skip_connect", 2), ("max_pool_3x3", 1)]


def test_darts_v2_network_has_reference_parameter_count():
    tot, add = _tally()
    C, layers = 36, 20
    s = add("bn", [add("conv", [Shape(3, 32, 32)], c=3 * C)])
    s0 = s1 = s
    c, rprev = C, False
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if red else c
        p0 = add("fact_reduce", [s0], c=c) if rprev else add("relu_conv_bn", [s0], c=c)
        states = [p0, add("relu_conv_bn", [s1], c=c)]
        genotype = DARTS_V2_REDUCE if red else DARTS_V2_NORMAL
        for n in range(4):
            outs = [add(name, [states[j]], stride=2 if red and j < 2 else 1)
                    for name, j in genotype[2 * n:2 * n + 2]]
            states.append(add("sum", outs))
        s0, s1, rprev = s1, add("concat", states[2:]), red
    add("linear", [add("gap", [s1])], n=10)
    assert tot[0] == 3_349_342
    assert round(tot[1] / 1e6) == 528


@pytest.mark.parametrize("edge, params, mmacs", [
    ("nor_conv_3x3", 1_531_546, 220.12), ("skip_connect", 73_306, 7.78)])
def test_nb201_network_extremes_match_benchmark(edge, params, mmacs):
    tot, add = _tally()
    x = add("bn", [add("conv", [Shape(3, 32, 32)], c=16)])
    for stage, c in enumerate([16, 32, 64]):
        if stage:  # ResNet basic block, stride 2
            a = add("relu_conv_bn", [add("relu_conv_bn", [x], c=c, k=3, stride=2)], c=c, k=3)
            d = add("conv", [add("avg_pool", [x], k=2, stride=2)], c=c, k=1)
            x = add("sum", [a, d])
        for _ in range(5):
            nodes = [x]
            for j in range(1, 4):
                nodes.append(add("sum", [add(edge, [nodes[i]]) for i in range(j)]))
            x = nodes[-1]
    add("linear", [add("gap", [add("relu", [add("bn", [x])])])], n=10)
    assert tot[0] == params
    assert round(tot[1] / 1e6, 2) == mmacs
