"""The adapter pass: 1x1 adapters exactly where channel counts differ, recorded and located."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from dasc.compiler.adapters import adapters, insert_adapters
from dasc.compiler.expand import expand
from dasc.compiler.ir import ChoiceNode, OpNode
from dasc.compiler.pipeline import compile_module
from dasc.compiler.shapes import infer_shapes
from dasc.compiler.verify import verify
from dasc.dsl.parser import parse
from dasc.ops.registry import Shape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.strategies import chain_spaces  # noqa: E402

HEAD = "input image [3, 8, 8]\n"


def adapted(text: str):
    return compile_module(parse(HEAD + text, "t.das"), {})


def test_choice_candidates_get_trailing_adapters():
    ir = adapted("network { return choice({conv(c=4), conv(c=16), skip_connect}, image) }")
    node = ir.node("out")
    conv4, conv16, skip = node.candidates
    assert [b.call.op for b in conv4.nodes] == ["conv", "adapter"]
    assert conv4.nodes[-1].call.args == (("c", 16),) and conv4.nodes[-1].inputs == (0,)
    assert conv4.nodes[-1].adapter == "candidate conv(c=4) gives 4 channels, largest is 16"
    assert len(conv16.nodes) == 1 and conv16.nodes[0].adapter is None
    assert skip.nodes[-1].adapter == "candidate skip_connect gives 3 channels, largest is 16"
    assert {c.shape for c in node.candidates} == {Shape(16, 8, 8)} == {node.shape}
    assert [(a.node, a.candidate, a.cin, a.cout) for a in adapters(ir)] == [
        ("out", "conv(c=4)", 4, 16), ("out", "skip_connect", 3, 16)]


def test_sum_inputs_get_adapter_nodes_with_the_sums_span():
    ir = adapted("network {\n  a = conv(image, 4)\n  s = sum(a, conv(image, 8), image)\n"
                 "  return s }")
    s = ir.node("s")
    assert s.inputs == ("s.in0.adapter", "s.conv", "s.in2.adapter")
    ad = ir.node("s.in0.adapter")
    assert isinstance(ad, OpNode) and ad.inputs == ("a",) and ad.call.args == (("c", 8),)
    assert ad.adapter == "input 0 (a) gives 4 channels, largest is 8"
    assert ad.shape == Shape(8, 8, 8) and ad.span == s.span and ad.span.line == 4
    assert ir.node("s.in2.adapter").inputs == ("image",)
    assert {ir.node(i).shape for i in s.inputs} == {s.shape}


def test_adapter_inside_a_cell_keeps_scope():
    ir = adapted("cell c(x; w) { return sum(x, conv(x, w)) keep 1 }\n"
                 "network { return c(image, 6) }")
    ad = ir.node("c0.out.in0.adapter")
    assert ad.scope == "c0" and ir.node("c0.out").inputs[0] == "c0.out.in0.adapter"


def test_no_adapters_when_widths_agree():
    text = "network { return sum(choice({max_pool_3x3, skip_connect}, image), image) }"
    ir = adapted(text)
    assert adapters(ir) == []
    before = infer_shapes(expand(parse(HEAD + text, "t.das"), {}))
    assert insert_adapters(before) == before


def test_zero_candidates_never_get_adapters():
    ir = adapted("network { return choice({none, conv(c=9)}, image) }")
    zero = ir.node("out").candidates[0]
    assert [b.call.op for b in zero.nodes] == ["none"] and zero.shape == Shape(9, 8, 8)


def test_sums_inside_composite_candidates_are_adapted():
    ir = adapted("op res(x; c) { return sum(x, conv(x, c)) }\n"
                 "network { return choice({res(c=6), res(c=3)}, image) }")
    wide, narrow = ir.node("out").candidates
    assert [b.call.op for b in wide.nodes] == ["conv", "adapter", "sum"]
    assert wide.nodes[1].inputs == (-1,) and wide.nodes[2].inputs == (1, 0)
    assert [b.call.op for b in narrow.nodes] == ["conv", "sum", "adapter"]
    assert narrow.shape == wide.shape == Shape(6, 8, 8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain_spaces())
def test_adapters_appear_exactly_where_channel_counts_differ(space):
    ir = compile_module(parse(space.text, "chain.das"), {})
    verify(ir, "adapters")
    found = {(a.node, a.candidate) for a in adapters(ir)}
    assert found == space.expected_adapters(), space.text
    for node_id, node in ir.nodes():
        if isinstance(node, ChoiceNode):
            assert len({c.shape for c in node.candidates}) == 1
