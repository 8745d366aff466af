"""Shape inference: every node and candidate op shaped; spatial clashes are located errors."""

from __future__ import annotations

import pytest

from dasc.compiler.expand import expand
from dasc.compiler.shapes import infer_shapes
from dasc.compiler.verify import verify
from dasc.dsl.parser import parse
from dasc.errors import ShapeError
from dasc.ops.registry import Shape

HEAD = "input image [3, 16, 16]\nparam C = 8\n"


def shaped(text: str):
    ir = infer_shapes(expand(parse(HEAD + text, "t.das"), {}))
    verify(ir, "shapes")
    return ir


def shape_error(text: str) -> ShapeError:
    with pytest.raises(ShapeError) as info:
        shaped(text)
    return info.value


def test_every_node_shaped_and_linear_flattens():
    ir = shaped("network { x = conv(image, C, stride=2) return linear(x, 10) }")
    assert ir.node("image").shape == Shape(3, 16, 16)
    assert ir.node("x").shape == Shape(8, 8, 8)
    assert ir.node("out").shape == Shape(10, 1, 1)
    assert ir.node("output").shape == Shape(10, 1, 1)


def test_expand_leaves_shapes_unset_and_pass_is_pure():
    ir = expand(parse(HEAD + "network { return relu(image) }", "t.das"), {})
    assert ir.node("out").shape is None
    after = infer_shapes(ir)
    assert ir.node("out").shape is None and after.node("out").shape == Shape(3, 16, 16)


def test_concat_adds_channels_sum_takes_widest():
    ir = shaped("network { a = conv(image, 4) b = conv(image, 6)\n"
                "  c = concat(a, b, a) return sum(a, b) }")
    assert ir.node("out").shape == Shape(6, 16, 16)
    # `c` is dead (not used by the output) and dropped by expand
    assert "c" not in ir.graph


def test_choice_shape_is_the_widest_candidate():
    ir = shaped("network { return choice({conv(c=4), conv(c=12), max_pool_3x3}, image, "
                "stride=2) }")
    node = ir.node("out")
    assert node.shape == Shape(12, 8, 8)
    assert [c.shape for c in node.candidates] == [Shape(4, 8, 8), Shape(12, 8, 8),
                                                  Shape(3, 8, 8)]


def test_zero_candidate_takes_the_common_shape():
    ir = shaped("network { return choice({none, conv(c=12)}, image) }")
    zero, conv = ir.node("out").candidates
    assert zero.zero and zero.shape == Shape(12, 16, 16) == conv.shape


def test_composite_candidate_ops_each_shaped():
    ir = shaped("op sep(x; c, stride=1) { y = relu(x) return bn(conv(y, c, stride=stride)) }\n"
                "network { return choice({sep(c=5), avg_pool_3x3}, image, stride=2) }")
    sep = ir.node("out").candidates[0]
    assert [b.shape for b in sep.nodes] == [Shape(3, 16, 16), Shape(5, 8, 8), Shape(5, 8, 8)]


def test_spatial_mismatch_in_sum():
    e = shape_error("network { a = conv(image, C, stride=2)\n  return sum(a, image) }")
    assert "different heights and widths" in e.message and "`a` gives [8, 8, 8]" in e.message
    assert "stride=2" in e.hint and e.span.line == 4


def test_spatial_mismatch_among_candidates():
    e = shape_error("network { return choice({max_pool_3x3(stride=2), skip_connect}, image) }")
    assert "candidates of this choice" in e.message and "stride" in e.hint
    assert e.span.line == 3 and e.span.col == 18


def test_op_rule_complaint_is_located():
    e = shape_error("network {\n  x = conv(image, C, groups=2)\n  return x }")
    assert "groups=2" in e.message and e.span.line == 4 and e.hint


def test_candidate_rule_complaint_names_candidate():
    e = shape_error("network { return choice({conv(c=6), conv(groups=3, c=5)}, image) }")
    assert e.message.startswith("candidate `conv(groups=3, c=5)`:")


def test_shared_cells_with_different_widths_share_alpha():
    ir = shaped("ops p = { max_pool_3x3, skip_connect }\n"
                "cell c(x; w) shared { return choice(p, relu_conv_bn(x, w)) }\n"
                "network { return c(c(image, 4), 8) }")
    assert ir.node("c0.out").shape.c == 4 and ir.node("c1.out").shape.c == 8
    assert ir.node("c0.out").alpha == ir.node("c1.out").alpha == "c[].out"
