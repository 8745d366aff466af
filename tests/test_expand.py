"""The expand pass: node naming, α keys, regions, sharing, composite ops, and its errors."""

from __future__ import annotations

import pytest

from dasc.compiler.expand import expand
from dasc.compiler.ir import ChoiceNode, CombineNode, CountRule, PathRule
from dasc.compiler.verify import verify
from dasc.dsl.parser import parse
from dasc.errors import ConstraintError, DascError, NameError_, ShapeError, TypeError_, UsageError

HEAD = "input image [3, 8, 8]\nparam C = 8\nops pools = { max_pool_3x3, avg_pool_3x3 }\n"

SEED = """
space pooling
param C = 16
param classes = 10
input image [1, 8, 8]
ops pools = { max_pool_3x3, avg_pool_3x3 }
network {
  x = relu(bn(conv(image, C, k=3)))
  y = choice(pools, x)
  return linear(gap(y), classes)
}
search { gate = sigmoid  tau = 0.5 }
"""

DARTS = """
space darts
param C = 16
param layers = 8
param classes = 10
input image [3, 32, 32]
ops darts_ops = { none, max_pool_3x3, avg_pool_3x3, skip_connect,
                  sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5 }
cell darts(s0, s1; C, stride=1, rprev=0) shared per stride {
  p0 = if rprev then fact_reduce(s0, C) else relu_conv_bn(s0, C, k=1)
  p1 = relu_conv_bn(s1, C, k=1)
  n2 = sum(choice(darts_ops, p0, stride=stride), choice(darts_ops, p1, stride=stride)) keep 2
  n3 = sum(choice(darts_ops, p0, stride=stride), choice(darts_ops, p1, stride=stride),
           choice(darts_ops, n2)) keep 2
  n4 = sum(choice(darts_ops, p0, stride=stride), choice(darts_ops, p1, stride=stride),
           choice(darts_ops, n2), choice(darts_ops, n3)) keep 2
  n5 = sum(choice(darts_ops, p0, stride=stride), choice(darts_ops, p1, stride=stride),
           choice(darts_ops, n2), choice(darts_ops, n3), choice(darts_ops, n4)) keep 2
  return concat(n2, n3, n4, n5)
}
network {
  stem = bn(conv(image, 3 * C, k=3))
  s0, s1 = stem, stem
  c = C
  rprev = 0
  for i in 0 .. layers {
    red = i == layers / 3 or i == 2 * layers / 3
    c = if red then 2 * c else c
    s0, s1 = s1, darts(s0, s1, c, stride=1 + red, rprev=rprev)
    rprev = red
  }
  return linear(gap(s1), classes)
}
constraint count skip_connect in darts <= 2
constraint paths in darts >= 1
"""


def ex(text: str, overrides=None):
    ir = expand(parse(text, "t.das"), overrides or {})
    verify(ir, "expand")
    return ir


def err(text: str, overrides=None) -> DascError:
    with pytest.raises(DascError) as info:
        ex(text, overrides)
    return info.value


# ---------------------------------------------------------------------------- naming


def test_seed_nodes_and_alpha():
    ir = ex(SEED)
    assert [n for n, _ in ir.nodes()] == ["image", "x.conv", "x.bn", "x", "y", "out.gap", "out",
                                          "output"]
    (cid, choice), = ir.choices()
    assert cid == "y" and choice.alpha == "network.y" and choice.region == "network"
    assert [c.name for c in choice.candidates] == ["max_pool_3x3", "avg_pool_3x3"]
    assert ir.name == "pooling" and ir.params == (("C", 16), ("classes", 10))
    assert [(s.key, s.value) for s in ir.search] == [("gate", "sigmoid"), ("tau", 0.5)]
    assert ir.node("x.conv").call.args[:2] == (("c", 16), ("k", 3))
    assert [r.id for r in ir.regions] == ["network"]


def test_darts_cells_regions_and_keys():
    ir = ex(DARTS)
    cells = [r for r in ir.regions if r.cell == "darts"]
    assert [r.id for r in cells] == [f"darts{i}" for i in range(8)]
    assert [r.key for r in cells].count("darts[stride=2]") == 2
    assert [r.id for r in ir.representatives()] == ["network", "darts0", "darts2"]
    for r in cells:
        choices = [n for n, p in ir.region_nodes(r.id) if isinstance(p, ChoiceNode)]
        assert len(choices) == 14
    c = ir.node("darts5.n3.e1")
    assert c.alpha == "darts[stride=2].n3.e1" and c.region == "darts5"
    n3 = ir.node("darts5.n3")
    assert isinstance(n3, CombineNode) and n3.keep == 2 and n3.select == "darts[stride=2].n3"
    assert n3.inputs == ("darts5.n3.e0", "darts5.n3.e1", "darts5.n3.e2")
    assert ir.node("darts3.p0").call.op == "fact_reduce"   # after the reduction cell
    assert ir.node("darts1.p0").call.op == "relu_conv_bn"
    assert ir.region("darts3").inputs == ("darts1.out", "darts2.out")
    assert ir.node("darts2.p1").call.arg("c") == 32
    assert ir.rules == (CountRule("darts", "skip_connect", 2), PathRule("darts", 1))


def test_reassigned_variables_get_suffixes():
    ir = ex(HEAD + "network { x = image for i in 0 .. 3 { x = relu(conv(x, C)) } return x }")
    ids = [n for n, _ in ir.nodes()]
    assert ids[1:7] == ["x.conv", "x", "x_1.conv", "x_1", "x_2.conv", "x_2"]
    assert ids[-1] == "output"


def test_composite_ops_inline_with_group():
    ir = ex(HEAD + """
      op rcb(x; c, k=1) { y = relu(x) return bn(conv(y, c, k=k)) }
      network { p = rcb(image, C, k=3)  return relu(rcb(p, 4)) }""")
    assert ir.node("p.y").group == "rcb@p"
    assert ir.node("p.conv").call.arg("k") == 3 and ir.node("p").call.op == "bn"
    assert ir.node("out.rcb").call.op == "bn" and ir.node("out.rcb.y").call.op == "relu"
    assert ir.node("out").call.op == "relu" and ir.node("out").group == ""


def test_composite_candidate_becomes_block():
    ir = ex(HEAD + """
      op sep(x; c=8, stride=1) { return bn(conv(relu(x), c, k=3, stride=stride)) }
      network { return choice({sep(c=4), max_pool_3x3}, image, stride=2) }""")
    c = ir.node("out")
    sep, pool = c.candidates
    assert sep.name == "sep(c=4)" and sep.op == "sep"
    assert [b.call.op for b in sep.nodes] == ["relu", "conv", "bn"]
    assert [b.inputs for b in sep.nodes] == [(-1,), (0,), (1,)]
    assert sep.nodes[1].call.argdict()["stride"] == 2 and sep.nodes[1].call.arg("c") == 4
    assert pool.nodes[0].call.args == (("stride", 2),)


def test_member_kwargs_win_over_call_site():
    ir = ex(HEAD + "network { return choice({conv(k=5), conv(k=1)}, image, k=3, c=4) }")
    ks = [c.nodes[0].call.arg("k") for c in ir.node("out").candidates]
    assert ks == [5, 1]


def test_local_opset_sees_locals_and_sharing_modes():
    ir = ex(HEAD + """
      cell a(x; w) independent { ops s = { conv(c=w), skip_connect } return choice(s, x) }
      cell b(x; w) shared per w { return choice(pools, x) }
      network { return b(b(b(a(a(image, 4), 4), 4), 5), 4) }""")
    assert ir.node("a0.out").alpha == "a[a0].out" and ir.node("a1.out").alpha == "a[a1].out"
    assert ir.node("a0.out").candidates[0].name == "conv(c=4)"
    assert [ir.node(f"b{i}.out").alpha for i in range(3)] == ["b[w=4].out", "b[w=5].out",
                                                              "b[w=4].out"]
    assert [r.representative for r in ir.regions] == [True, True, True, True, True, False]


def test_lazy_conditional_skips_untaken_branch():
    ir = ex(HEAD + "network { return if C > 4 then relu(image) else nosuchop(image) }")
    assert ir.node("out").call.op == "relu"


def test_overrides_and_unknown_override():
    ir = ex(HEAD + "network { return conv(image, C) }", {"C": 3})
    assert ir.node("out").call.arg("c") == 3 and ir.param("C") == 3
    e = err(HEAD + "network { return image }", {"Cc": 3})
    assert isinstance(e, UsageError) and "Cc" in e.message and "C" in e.hint


def test_dead_nodes_dropped():
    ir = ex(HEAD + "network { unused = choice(pools, image) return relu(image) }")
    assert not ir.choices() and set(ir.graph) == {"image", "out", "output"}


def test_integer_semantics():
    ir = ex(HEAD + "param A = -7 / 2\nparam B = -7 % 3\nparam D = min(3, max(1, 2)) "
            "+ (2 < 3) + (not 0)\nnetwork { return image }")
    assert dict(ir.params)["A"] == -4 and dict(ir.params)["B"] == 2
    assert dict(ir.params)["D"] == 4


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("body, cls, words", [
    ("network { return convv(image) }", NameError_, "unknown op `convv`"),
    ("network { return relu(imag) }", NameError_, "unknown name `imag`"),
    ("network { return conv(image, image) }", TypeError_, "tensor"),
    ("network { return relu(3) }", TypeError_, "expects a tensor"),
    ("network { return conv(image, relu(image)) }", TypeError_, "argument 2 is a tensor"),
    ("network { return conv(image, C, 3, 1, 1, 1, 0, 9) }", TypeError_, "integer argument"),
    ("network { return conv(image, C, kk=3) }", TypeError_, "no parameter `kk`"),
    ("network { return linear(image) }", TypeError_, "needs the argument `n`"),
    ("network { return conv(image, C, c=3) }", TypeError_, "twice"),
    ("network { return sum(image, image) keep 0 }", TypeError_, "keep 0"),
    ("network { return concat(image) keep 1 }", DascError, "keep"),
    ("op f(x) { return g(x) }\nop g(x) { return f(x) }\nnetwork { return f(image) }",
     TypeError_, "f -> g -> f"),
    ("cell c(x) { return c(x) }\nnetwork { return c(image) }", TypeError_, "calls itself"),
    ("network { return conv(image, C / (C - 8)) }", TypeError_, "division by zero"),
    ("network { return conv(image, C % 0) }", TypeError_, "division by zero"),
    ("network { return conv(image, C - 9) }", ShapeError, "-1 channels"),
    ("network { x = image for i in 0 .. 2000000 { x = relu(x) } return x }", UsageError,
     "2,000,000 times"),
    ("op f(x) { y = relu(x) }\nnetwork { return f(image) }", TypeError_, "no `return`"),
    ("op f(x; n) { if n { return relu(x) } }\nnetwork { return f(image, 0) }", TypeError_,
     "ended without `return`"),
    ("op f(x) { return 3 }\nnetwork { return f(image) }", TypeError_, "returned the integer"),
    ("op f(x) { return choice(pools, x) }\nnetwork { return f(image) }", TypeError_,
     "choice inside composite op `f`"),
    ("op f(x) { return sum(x, x) keep 1 }\nnetwork { return f(image) }", TypeError_,
     "inside composite op"),
    ("op relu(x) { return x }\nnetwork { return image }", NameError_, "built-in"),
    ("op f(x, x) { return x }\nnetwork { return image }", NameError_, "declared twice"),
    ("ops pools = { none }\nnetwork { return image }", NameError_, "defined twice"),
    ("network { return image }\nnetwork { return image }", NameError_, "two `network`"),
    ("input other [1, 2, 2]\nnetwork { return image }", NameError_, "two inputs"),
    ("cell c(x; n) shared per m { return x }\nnetwork { return image }", NameError_,
     "shared per m"),
    ("cell c(x) { return relu(x) }\nop f(x) { return c(x) }\nnetwork { return f(image) }",
     TypeError_, "cell `c` used inside op"),
    ("cell c(x) { return relu(image) }\nnetwork { return c(image) }", NameError_,
     "only visible in the network"),
    ("network { return choice(nope, image) }", NameError_, "unknown op set"),
    ("network { return choice({pools}, image) }", NameError_, "unknown op `pools`"),
    ("network { return choice({conv(kk=1)}, image) }", TypeError_, "no parameter `kk`"),
    ("network { return choice({none, none}, image) }", NameError_, "twice"),
    ("network { return choice(pools, image, c=3) }", TypeError_, "no parameter `c`"),
    ("network { return choice({linear}, image) }", TypeError_, "needs the argument `n`"),
    ("network { x = C + image return x }", TypeError_, "got a tensor"),
    ("network { return 3 }", TypeError_, "returned the integer"),
    ("param Z = image\nnetwork { return image }", NameError_, "only visible"),
    ("param Z = relu(1)\nnetwork { return image }", TypeError_, "only integers"),
    ("network { return pools }", TypeError_, "op set"),
    ("network { return relu }", TypeError_, "is an op"),
    ("network { return choice(pools, image) }\nconstraint count skip_connect <= 1",
     ConstraintError, "offers `skip_connect`"),
    ("network { return image }\nconstraint paths in nocell >= 1", NameError_, "unknown cell"),
    ("network { return image }\nconstraint count nosuch <= 1", NameError_, "unknown op"),
])
def test_errors(body, cls, words):
    e = err(HEAD + body)
    assert isinstance(e, cls), (type(e), e.message)
    assert words in e.message + (e.hint or ""), e.message
    assert e.span is not None and e.span.line >= 1


def test_missing_network_and_input():
    assert "no `network" in err("input image [1, 2, 2]\n").message
    assert "no `input`" in err("network { return relu(x) }").message


def test_zero_input_channels():
    e = err("input image [0, 8, 8]\nnetwork { return image }")
    assert isinstance(e, ShapeError) and "0 channels" in e.message


def test_shared_instances_must_match():
    e = err(HEAD + """
      cell c(x; n) shared { return if n then choice(pools, x) else choice({none}, x) }
      network { return c(c(image, 1), 0) }""")
    assert "share α" in e.message and "c0" in e.message and "c1" in e.message
    assert e.span.line == 6


@pytest.mark.slow
def test_shared_instances_must_use_the_same_choices():
    e = err(HEAD + """
      cell c(x; n) shared { y = choice(pools, x) return if n then y else relu(x) }
      network { return c(c(image, 1), 0) }""")
    assert "`c0` uses the decision `y`" in e.message and e.span.line == 6


def test_node_limit():
    e = err(HEAD + "network { x = image for i in 0 .. 60000 { x = relu(relu(x)) } return x }")
    assert isinstance(e, UsageError) and "100,000 nodes" in e.message


def test_deep_op_chains_are_an_error_not_a_crash():
    """A chain of 600 composite ops would overflow Python's stack: a DascError instead."""
    ops = "\n".join(f"op f{i}(x) {{ return f{i + 1}(x) }}" for i in range(600))
    text = HEAD + ops + "\nop f600(x) { return relu(x) }\nnetwork { return f0(image) }"
    with pytest.raises(DascError, match="nested too deeply"):
        expand(parse(text, "t.das"), {})
