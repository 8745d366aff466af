"""Pruning: the derived network has no choices, verifies, and costs what `arch_cost` says.

Fidelity: NAS-Bench-201 architectures derived from `nb201.das` cost what the reference networks
do, including ops fed only by `none` edges (NAS-Bench-201 builds and counts them too).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dasc.compiler.arch import Arch, random_arch
from dasc.compiler.constraints import violations
from dasc.compiler.cost import Cost, arch_cost, total_cost
from dasc.compiler.ir import ChoiceNode, CombineNode, OpNode
from dasc.compiler.prune import is_derived, prune
from dasc.compiler.verify import verify
from dasc.errors import ConstraintError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference import GENOTYPE_DIR  # noqa: E402
from tests.test_dp import OPS, Edge, Node, Spec, build, specs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NB201_FIGURES = {  # params, MACs at C=16, N=5, 10 classes (tests/test_reference.py)
    "nb201_all_skip": (73_306, 7_783_040),
    "nb201_all_conv3x3": (1_531_546, 220_119_680),
    "nb201_mixed": (802_426, 113_951_360),
    "nb201_best": (1_288_506, 184_730_240),
    "nb201_all_ops": (129_306, 15_647_360),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.integers(0, 2 ** 32))
def test_pruned_network_is_derived_and_costs_arch_cost(spec, seed):
    ir = build(spec)
    try:
        arch = random_arch(ir, random.Random(seed), constrained=False)
    except ConstraintError:  # no architecture at all (a kept edge offering only none)
        return
    net = prune(ir, arch)
    assert is_derived(net)
    verify(net, "prune")
    assert total_cost(net) == arch_cost(ir, arch)
    for n, p in net.nodes():  # original nodes, or the ops of a chosen candidate
        assert n in ir.graph or (isinstance(p, OpNode) and n.startswith(p.group + "."))


def test_keep_drops_edges_and_their_adapters():
    ir = build(Spec(1, (Node((Edge(0, OPS, adapter=True), Edge(0, OPS), Edge(0, None)),
                             keep=2),)))
    arch = Arch((("c[].n0.e1", "sep_conv_3x3"),), (("c[].n0", (1, 2)),))
    net = prune(ir, arch)
    assert net.node("c0.n0").inputs == ("c0.n0.e1.sep_conv_3x3", "c0.n0.f2")
    assert net.node("c0.n0").keep is None and net.node("c0.n0").select is None
    assert "c0.n0.e0.adapter" not in net.graph and "c0.n0.e0" not in net.graph
    assert net.node("c0.n0.e1.sep_conv_3x3").group == "c0.n0.e1"
    assert net.rules == ()


def test_none_leaves_sums_unless_it_is_all_they_have():
    nodes = (Node((Edge(0, ("none", "skip_connect")),)),
             Node((Edge(0, ("none", "skip_connect")), Edge(1, ("none", "sep_conv_3x3")))))
    ir = build(Spec(1, nodes))
    arch = Arch((("c[].n0.e0", "none"), ("c[].n1.e0", "skip_connect"),
                 ("c[].n1.e1", "sep_conv_3x3")))
    net = prune(ir, arch)
    assert net.node("c0.n0").inputs == ("c0.n0.e0.none",)  # all-zero sum keeps its zero
    assert net.node("c0.n1").inputs == ("c0.n1.e0.skip_connect", "c0.n1.e1.sep_conv_3x3")
    assert net.node("c0.out").inputs == ("c0.n1",)  # zero n0 dropped from the output sum
    assert net.node("c0.n1.e1.sep_conv_3x3").inputs == ("c0.n0",)  # still fed by the zero


def nb201_arch(text: str) -> Arch:
    nodes = [part.split("|")[1:-1] for part in text.strip().split("+")]
    choices = []
    for j, edges in enumerate(nodes, start=1):
        for i, e in enumerate(edges):
            op, src = e.split("~")
            assert int(src) == i
            key = "nb201[].n1" if j == 1 else f"nb201[].n{j}.e{i}"
            choices.append((key, op))
    return Arch(tuple(choices))


@pytest.fixture(scope="module")
def nb201_ir():
    from dasc.compiler.pipeline import compile_space

    return compile_space(str(ROOT / "spaces" / "nb201.das"))


@pytest.mark.parametrize("name", sorted(NB201_FIGURES))
def test_nb201_architectures_cost_what_the_benchmark_says(nb201_ir, name):
    arch = nb201_arch((GENOTYPE_DIR / f"{name}.txt").read_text())
    assert arch_cost(nb201_ir, arch) == Cost(*NB201_FIGURES[name])
    assert total_cost(prune(nb201_ir, arch)) == Cost(*NB201_FIGURES[name])


def test_nb201_ops_after_a_zero_node_still_count(nb201_ir):
    """Node 1 is all `none`; the conv on edge 1->2 is still built by NAS-Bench-201."""
    from tests.reference.macs import count_params
    from tests.reference.nb201 import build_nb201_network

    text = "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"
    expected = count_params(build_nb201_network(text))
    net = prune(nb201_ir, nb201_arch(text))
    assert total_cost(net).params == expected
    assert any(isinstance(p, ChoiceNode) or (isinstance(p, CombineNode) and p.keep)
               for _, p in nb201_ir.nodes())


def test_darts_uniform_sample_is_valid():
    from dasc.compiler.pipeline import compile_space

    ir = compile_space(str(ROOT / "spaces" / "digits.das"))
    for seed in range(5):
        arch = random_arch(ir, random.Random(seed))
        assert violations(ir, arch) == []
        verify(prune(ir, arch), "prune")


@pytest.mark.parametrize("space", ["nb201", "darts", "mobile"])
def test_pruned_networks_run_and_have_arch_cost_parameters(space):
    """The derived IR lowers to torch, runs, and has exactly `arch_cost` parameters (so the
    cost model, prune and the runtime agree; mobile has adapters, nb201 zero edges)."""
    torch = pytest.importorskip("torch")
    from dasc.compiler.pipeline import compile_space
    from dasc.runtime.lower import lower

    ir = compile_space(str(ROOT / "spaces" / f"{space}.das"))
    arch = random_arch(ir, random.Random(1))
    gm = lower(prune(ir, arch))
    shape = ir.node(ir.input).shape
    assert gm(torch.randn(2, shape.c, shape.h, shape.w)).shape == (2, 10)
    assert sum(p.numel() for p in gm.parameters()) == arch_cost(ir, arch).params
