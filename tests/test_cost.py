"""The cost model: per-op rules summed over the supernet and over a derived network.

The fidelity check: DARTS genotypes from the papers, derived from `darts.das` at C=36 and 20
layers, must cost exactly what the reference code's networks do (figures pinned in
tests/test_reference.py from docs/reference-figures.md), parameter for parameter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dasc.compiler.arch import Arch, read_arch
from dasc.compiler.cost import Cost, arch_cost, candidate_cost, node_cost, supernet_cost
from dasc.compiler.ir import PathRule

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reference import GENOTYPE_DIR  # noqa: E402
from tests.reference.genotype_text import parse_genotype  # noqa: E402
from tests.test_dp import OPS, S, Edge, Node, Spec, build, candidate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DARTS_FIGURES = {  # params without the auxiliary head, MACs (C=36, 20 layers, 10 classes)
    "DARTS_V1": (3_169_414, 500_987_520),
    "DARTS_V2": (3_349_342, 528_359_040),
    "PC_DARTS": (3_634_678, 556_670_592),
}


def genotype_arch(text: str) -> Arch:
    """A DARTS genotype as an Arch of darts.das (normal: stride=1, reduce: stride=2)."""
    g = parse_genotype(text)
    choices, keeps = [], []
    for kind, pairs in (("darts[stride=1]", g.normal), ("darts[stride=2]", g.reduce)):
        for i in range(4):
            (op_a, a), (op_b, b) = pairs[2 * i], pairs[2 * i + 1]
            keeps.append((f"{kind}.n{i + 2}", (a, b)))
            choices += [(f"{kind}.n{i + 2}.e{a}", op_a), (f"{kind}.n{i + 2}.e{b}", op_b)]
    return Arch(tuple(choices), tuple(keeps))


@pytest.fixture(scope="module")
def darts_eval_ir():
    from dasc.compiler.pipeline import compile_space

    return compile_space(str(ROOT / "spaces" / "darts.das"), {"C": 36, "layers": 20})


@pytest.mark.parametrize("name", sorted(DARTS_FIGURES))
def test_darts_genotypes_cost_what_the_reference_networks_do(darts_eval_ir, name):
    path = GENOTYPE_DIR / f"{name}.txt"
    arch = genotype_arch(path.read_text())
    assert arch_cost(darts_eval_ir, arch) == Cost(*DARTS_FIGURES[name])
    assert read_arch(str(path), darts_eval_ir) == arch  # --arch takes genotype files too


def test_supernet_is_every_candidate():
    ir = build(Spec(1, (Node((Edge(0, OPS), Edge(0, None)), keep=1),)))
    by_hand = sum((candidate_cost(candidate(op), S) for op in OPS), Cost())
    assert node_cost(ir, "c0.n0.e0") == by_hand
    assert by_hand.params == 2 * (4 * 9 + 4 * 4 + 2 * 4)  # sep_conv_3x3 at C=4, affine BN
    assert supernet_cost(ir) == by_hand  # relus and sums cost nothing


def test_arch_cost_counts_only_the_kept_edge():
    ir = build(Spec(1, (Node((Edge(0, OPS, adapter=True), Edge(0, OPS)), keep=1),),
                    rules=(PathRule("c", 1),)))
    conv = candidate_cost(candidate("sep_conv_3x3"), S)
    adapter = node_cost(ir, "c0.n0.e0.adapter")
    assert adapter.params > 0
    kept0 = Arch((("c[].n0.e0", "sep_conv_3x3"),), (("c[].n0", (0,)),))
    kept1 = Arch((("c[].n0.e1", "sep_conv_3x3"),), (("c[].n0", (1,)),))
    assert arch_cost(ir, kept0) == conv + adapter
    assert arch_cost(ir, kept1) == conv
