"""Formatter: round trip `parse(fmt(m)) == m`, idempotence, comments kept, shipped spaces."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dasc.dsl import ast
from dasc.dsl.parser import KEYWORDS, parse
from dasc.dsl.printer import MAX_WIDTH, format_expr, format_module

SPACES = Path(__file__).resolve().parent.parent / "spaces"
N = ast.Name

# ------------------------------------------------------------------------------ strategies

_FIRST = "abcxyzABCXYZ_"
_REST = "abcdefghijklmnopqrstuvwxyz_0123456789ABC"
identifiers = st.builds(lambda a, b: a + b, st.sampled_from(_FIRST),
                        st.text(_REST, max_size=6)).filter(lambda s: s not in KEYWORDS)
names = identifiers.map(N)
ints = st.integers(min_value=0, max_value=10**30).map(ast.Num)


def _unique_kwargs(values):
    keys = st.lists(identifiers, unique=True, max_size=3)
    return keys.flatmap(lambda ks: st.tuples(*[values.map(lambda v, k=k: ast.Keyword(k, v))
                                               for k in ks]))


oprefs = st.builds(ast.OpRef, names, _unique_kwargs(ints | names))
opset_members = st.lists(oprefs, min_size=1, max_size=4).map(tuple)


def _extend(inner):
    return st.one_of(
        st.builds(ast.Binary, st.sampled_from(["or", "and", "==", "!=", "<", "<=", ">", ">=",
                                               "+", "-", "*", "/", "%"]), inner, inner),
        st.builds(ast.Unary, st.sampled_from(["-", "not"]), inner),
        st.builds(ast.Cond, inner, inner, inner),
        st.builds(ast.Call, names, st.lists(inner, max_size=4).map(tuple), _unique_kwargs(inner)),
        st.builds(ast.Call, st.just(N("sum")), st.lists(inner, min_size=1, max_size=5).map(tuple),
                  st.just(()), inner),
        st.builds(ast.Choice, names | opset_members.map(ast.OpSetLit), inner,
                  _unique_kwargs(inner)),
    )


exprs = st.recursive(ints | names, _extend, max_leaves=8)


def _stmts(depth: int):
    simple = st.one_of(
        st.integers(1, 3).flatmap(lambda n: st.builds(
            ast.Assign, st.lists(names, min_size=n, max_size=n).map(tuple),
            st.lists(exprs, min_size=n, max_size=n).map(tuple))),
        st.builds(ast.Return, exprs),
        st.builds(ast.OpSetDecl, names, opset_members),
    )
    if depth == 0:
        return simple
    inner = st.lists(_stmts(depth - 1), max_size=3).map(tuple)
    return st.one_of(
        simple,
        st.builds(ast.For, names, exprs, exprs, inner),
        st.builds(ast.If, exprs, inner, inner),
    )


bodies = st.lists(_stmts(2), max_size=4).map(tuple)
params = st.builds(ast.Param, names, st.none() | exprs)
signatures = st.builds(ast.Signature, st.lists(names.map(ast.Param), min_size=1, max_size=3)
                       .map(tuple), st.lists(params, max_size=3).map(tuple))
strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(ast.Str)
setting_values = st.one_of(
    st.integers(-10**6, 10**6).map(ast.Num),
    st.floats(allow_nan=False, allow_infinity=False).map(ast.Num),
    names, strings)

decls = st.one_of(
    st.builds(ast.SpaceDecl, names),
    st.builds(ast.Include, strings),
    st.builds(ast.ParamDecl, names, exprs),
    st.builds(ast.InputDecl, names, st.tuples(exprs, exprs, exprs)),
    st.builds(ast.OpSetDecl, names, opset_members),
    st.builds(ast.OpDecl, names, signatures, bodies),
    st.builds(ast.CellDecl, names, signatures, st.sampled_from(["shared", "independent"]),
              st.just(()), bodies),
    st.builds(ast.CellDecl, names, signatures, st.just("shared"),
              st.lists(names, min_size=1, max_size=2).map(tuple), bodies),
    st.builds(ast.NetworkDecl, bodies),
    st.builds(ast.PathConstraint, st.none() | names, exprs),
    st.builds(ast.CountConstraint, names, st.none() | names, exprs),
    st.builds(ast.SearchDecl, st.lists(st.builds(ast.Setting, names, setting_values),
                                       max_size=4).map(tuple)),
)
modules = st.lists(decls, max_size=5).map(lambda ds: ast.Module(tuple(ds)))

# ------------------------------------------------------------------------------ properties


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules)
def test_round_trip_and_idempotence(m):
    text = format_module(m)
    again = parse(text, "fmt.das")
    assert again == m
    assert format_module(again) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules, st.data())
def test_comments_survive_anywhere(m, data):
    """Comments dropped at random line ends and between lines are all kept, stably."""
    lines = format_module(m).split("\n")[:-1]
    out: list[str] = []
    for i, line in enumerate(lines):
        if data.draw(st.booleans(), label=f"own{i}"):
            out.append(f"# own {i}")
        out.append(line + (f"  # end {i}" if data.draw(st.booleans(), label=f"end{i}") else ""))
    if data.draw(st.booleans(), label="last"):
        out.append("# last")
    text = "\n".join(out) + "\n"
    parsed = parse(text, "c.das")
    assert parsed == m
    once = format_module(parsed)
    assert Counter(c.text for c in parse(once, "c.das").comments) == \
        Counter(c.text for c in parsed.comments)
    assert parse(once, "c.das") == m
    assert format_module(parse(once, "c.das")) == once


# --------------------------------------------------------------------------- layout details


@pytest.mark.parametrize("text, expected", [
    ("(a + b) * c", "(a + b) * c"),
    ("a + (b + c)", "a + (b + c)"),
    ("(a + b) + c", "a + b + c"),
    ("a - (b - c)", "a - (b - c)"),
    ("(a < b) == c", "(a < b) == c"),
    ("not (a and b)", "not (a and b)"),
    ("(not a) and b", "not a and b"),
    ("-(a * b)", "-(a * b)"),
    ("(-a) * b", "-a * b"),
    ("1 + (if a then b else c)", "1 + (if a then b else c)"),
    ("if (if a then b else c) then d else e", "if if a then b else c then d else e"),
    ("sum(a, b) keep (k + 1)", "sum(a, b) keep (k + 1)"),
    ("choice({ a, b(k=5) }, x, stride=2)", "choice({ a, b(k=5) }, x, stride=2)"),
])
def test_minimal_parentheses(text, expected):
    (decl,) = parse(f"param p = {text}", "t.das").decls
    assert format_expr(decl.value) == expected


def test_canonical_layout():
    src = ("space s param C=16 param n=2 input x[1,8,8] ops o={a,b(k=3)} "
           "cell c(s0;C,stride=1) { y=s0 return y } network { if n>1 { z=1 } else { z=2 } "
           "for i in 0..n { x=c(x,C) } return x } constraint paths in c>=1 "
           "search { gate=softmax lr=0.025 }")
    assert format_module(parse(src, "t.das")) == """\
space s

param C = 16
param n = 2
input x [1, 8, 8]

ops o = { a, b(k=3) }

cell c(s0; C, stride=1) shared {
  y = s0
  return y
}

network {
  if n > 1 {
    z = 1
  } else {
    z = 2
  }
  for i in 0 .. n {
    x = c(x, C)
  }
  return x
}

constraint paths in c >= 1

search {
  gate = softmax
  lr = 0.025
}
"""


def test_long_sums_wrap_one_argument_per_line():
    args = ", ".join(f"choice(darts_ops, node{i}, stride=stride)" for i in range(4))
    text = format_module(parse(f"cell c(x) {{ n = sum({args}) keep 2 return n }}", "t.das"))
    lines = text.splitlines()
    assert lines[1] == "  n = sum("
    assert lines[2] == "    choice(darts_ops, node0, stride=stride),"
    assert lines[5] == "    choice(darts_ops, node3, stride=stride)"
    assert lines[6] == "  ) keep 2"
    assert all(len(line) <= MAX_WIDTH for line in lines)


def test_comment_placement():
    src = """\
# header
space s  # name
network {  # opens
  x = sum(a,  # inside
          b)
  # before y

  y = x  # end of y
  if x { z = 1 } else { z = 2 }  # after if
  # closing
}
# tail
"""
    assert format_module(parse(src, "t.das")) == """\
# header
space s  # name

network {
  # opens
  # inside
  x = sum(a, b)
  # before y

  y = x  # end of y
  if x {
    z = 1
  } else {
    z = 2
  }  # after if
  # closing
}
# tail
"""


def test_blank_lines_kept_within_a_group_and_collapsed():
    src = "param a = 1\n\n\n\nparam b = 2\nparam c = 3\nnetwork {\n  x = 1\n\n\n  y = 2\n}\n"
    assert format_module(parse(src, "t.das")) == (
        "param a = 1\n\nparam b = 2\nparam c = 3\n\nnetwork {\n  x = 1\n\n  y = 2\n}\n")


def test_empty_module():
    assert format_module(ast.Module(())) == ""
    assert format_module(parse("# only\n", "t.das")) == "# only\n"


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.das")), ids=lambda p: p.name)
def test_shipped_spaces_are_canonical(path):
    text = path.read_text(encoding="utf-8")
    m = parse(text, str(path))
    assert format_module(m) == text
    assert parse(format_module(m), "again.das") == m
