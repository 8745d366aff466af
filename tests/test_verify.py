"""The verifier: passes on compiled IR, names the stage on each kind of broken invariant."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dasc.compiler.expand import expand
from dasc.compiler.ir import CombineNode, OpCall, OpNode, Region
from dasc.compiler.pipeline import compile_module
from dasc.compiler.verify import VerifyError, verify
from dasc.dsl.parser import parse
from dasc.errors import DascError

TEXT = """
input image [3, 8, 8]
ops p = { max_pool_3x3, conv(c=6) }
cell c(x) shared { return sum(choice(p, x), choice(p, x)) keep 1 }
network { return c(c(image)) }
"""


@pytest.fixture
def ir():
    return compile_module(parse(TEXT, "t.das"), {})


def broken(ir, stage="adapters") -> VerifyError:
    with pytest.raises(VerifyError) as info:
        verify(ir, stage)
    assert info.value.stage == stage and f"after `{stage}`" in str(info.value)
    assert not isinstance(info.value, DascError)
    return info.value


def test_compiled_ir_verifies_at_every_stage(ir):
    verify(ir, "adapters")
    verify(expand(parse(TEXT, "t.das"), {}), "expand")


def test_cycle(ir):
    ir.graph.add_edge("c1.out", "c0.out.e0")
    assert "cycle" in str(broken(ir))


def test_edges_must_mirror_inputs(ir):
    ir.graph.add_edge("image", "c1.out")
    assert "mirror" in str(broken(ir))


def test_missing_input_node(ir):
    node = ir.node("c0.out")
    ir.graph.nodes["c0.out"]["node"] = replace(node, inputs=node.inputs + ("ghost",))
    assert "ghost" in str(broken(ir))


def test_two_outputs(ir):
    ir.add("output2", ir.node("output"))
    assert "one input and one output" in str(broken(ir))


def test_unshaped_node_after_shapes(ir):
    ir.replace("c0.out", replace(ir.node("c0.out"), shape=None))
    assert "shape" in str(broken(ir, "shapes"))
    verify(ir, "expand")  # shapes are not required yet after expand


def test_candidates_must_share_a_shape_after_adapters(ir):
    node = ir.node("c0.out.e0")
    cand = node.candidates[0]
    odd = replace(cand, nodes=(replace(cand.nodes[0], shape=replace(cand.shape, c=99)),))
    ir.replace("c0.out.e0", replace(node, candidates=(odd,) + node.candidates[1:]))
    assert "gives" in str(broken(ir))
    verify(ir, "shapes")


def test_empty_choice(ir):
    ir.replace("c0.out.e0", replace(ir.node("c0.out.e0"), candidates=()))
    assert "no candidates" in str(broken(ir))


def test_keep_out_of_bounds(ir):
    ir.replace("c0.out", replace(ir.node("c0.out"), keep=3))
    assert "keeps 3" in str(broken(ir))


def test_alpha_shared_by_different_candidate_lists(ir):
    node = ir.node("c1.out.e0")
    ir.replace("c1.out.e0", replace(node, candidates=node.candidates[:1]))
    assert "shares key" in str(broken(ir))


def test_regions_consistent(ir):
    ir.regions = ir.regions + (Region("c9", "c", "c[]", ("image",), "nowhere", False),)
    assert "nowhere" in str(broken(ir))
    ir.regions = ir.regions[:-1] + (Region("c0", "c", "c[]", ("image",), "output", False),)
    assert "duplicate region" in str(broken(ir))


def test_unknown_op_and_arity(ir):
    ir.replace("c0.out", CombineNode("sum", ("c0.out.e0",), region="c0", scope="c0",
                                     shape=ir.node("c0.out").shape))
    verify(ir, "adapters")
    ir.add("junk", OpNode(OpCall("frobnicate"), ("image",), ir.node("image").shape))
    assert "unknown op" in str(broken(ir))
