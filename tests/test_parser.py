"""Parser: every construct to its AST, spans, friendly syntax errors (golden), robustness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dasc.dsl import ast
from dasc.dsl.parser import KEYWORDS, MAX_DEPTH, parse
from dasc.errors import ParseError, Sources, Span

GOLDEN = Path(__file__).parent / "golden" / "syntax"
SPACES = Path(__file__).resolve().parent.parent / "spaces"

N = ast.Name
I = ast.Num  # noqa: E741 - reads like the literal it builds


def body(text: str) -> tuple:
    """The statements of `network { text }`."""
    (net,) = parse("network {\n" + text + "\n}\n", "t.das").decls
    return net.body


def value(text: str) -> ast.Expr:
    (decl,) = parse(f"param p = {text}\n", "t.das").decls
    return decl.value


def call(f, *args, kwargs=(), keep=None):
    return ast.Call(N(f), tuple(args), tuple(ast.Keyword(k, v) for k, v in kwargs), keep)


# ---------------------------------------------------------------------------- declarations


def test_top_level_declarations():
    m = parse('space s\ninclude "x.das"\nparam C = 16\ninput image [1, 8, 8]\n'
              'ops o = { a, b(k=5) }\nconstraint paths >= 1\nconstraint paths in c >= 2\n'
              'constraint count skip_connect <= 2\nconstraint count none in c <= 1\n', "t.das")
    assert m.decls == (
        ast.SpaceDecl(N("s")),
        ast.Include(ast.Str("x.das")),
        ast.ParamDecl(N("C"), I(16)),
        ast.InputDecl(N("image"), (I(1), I(8), I(8))),
        ast.OpSetDecl(N("o"), (ast.OpRef(N("a")), ast.OpRef(N("b"), (ast.Keyword("k", I(5)),)))),
        ast.PathConstraint(None, I(1)),
        ast.PathConstraint(N("c"), I(2)),
        ast.CountConstraint(N("skip_connect"), None, I(2)),
        ast.CountConstraint(N("none"), N("c"), I(1)),
    )
    assert m.file == "t.das"


def test_op_and_cell_declarations():
    m = parse("op blk(x; c, k=3) { return conv(x, c, k=k) }\n"
              "cell a(s0, s1; C, stride=1) shared per stride, C { return s1 }\n"
              "cell b(x) independent { return x }\n"
              "cell d(x) shared { return x }\n"
              "cell e(x) { return x }\n", "t.das")
    op, a, b, d, e = m.decls
    assert op == ast.OpDecl(
        N("blk"), ast.Signature((ast.Param(N("x")),), (ast.Param(N("c")), ast.Param(N("k"), I(3)))),
        (ast.Return(call("conv", N("x"), N("c"), kwargs=[("k", N("k"))])),))
    assert a.sig.tensors == (ast.Param(N("s0")), ast.Param(N("s1")))
    assert (a.sharing, a.share_per) == ("shared", (N("stride"), N("C")))
    assert (b.sharing, b.share_per) == ("independent", ())
    assert (d.sharing, d.share_per) == ("shared", ())
    assert e == d.__class__(N("e"), d.sig, "shared", (), d.body)


def test_search_settings():
    (s,) = parse('search { gate = softmax epochs = 50 lr = 0.025 wd = 3e-4 neg = -1 '
                 'neg2 = -0.5 table = "lat.json" }', "t.das").decls
    assert [(x.key.id, x.value) for x in s.settings] == [
        ("gate", N("softmax")), ("epochs", I(50)), ("lr", I(0.025)), ("wd", I(3e-4)),
        ("neg", I(-1)), ("neg2", I(-0.5)), ("table", ast.Str("lat.json"))]
    assert isinstance(s.settings[1].value.value, int)


def test_empty_file_and_comments_only():
    assert parse("", "t.das").decls == ()
    m = parse("# just a comment\n\n# another\n", "t.das")
    assert m.decls == () and [c.text for c in m.comments] == ["# just a comment", "# another"]


# ------------------------------------------------------------------------------ statements


def test_statements():
    stmts = body("a = 1\ns0, s1 = s1, a\nfor i in 0 .. n { b = i }\n"
                 "ops local = { conv(c=a) }\nreturn a")
    assert stmts == (
        ast.Assign((N("a"),), (I(1),)),
        ast.Assign((N("s0"), N("s1")), (N("s1"), N("a"))),
        ast.For(N("i"), I(0), N("n"), (ast.Assign((N("b"),), (N("i"),)),)),
        ast.OpSetDecl(N("local"), (ast.OpRef(N("conv"), (ast.Keyword("c", N("a")),)),)),
        ast.Return(N("a")),
    )


def test_if_else_chains():
    (stmt,) = body("if a { x = 1 } else if b { x = 2 } else { x = 3 }")
    one, two, three = (ast.Assign((N("x"),), (I(v),)) for v in (1, 2, 3))
    assert stmt == ast.If(N("a"), (one,), (ast.If(N("b"), (two,), (three,)),))
    (plain,) = body("if a { x = 1 }")
    assert plain == ast.If(N("a"), (one,), ())
    (nested,) = body("if a { x = 1 } else { if b { x = 2 } }")
    assert nested == ast.If(N("a"), (one,), (ast.If(N("b"), (two,)),))


# ----------------------------------------------------------------------------- expressions


@pytest.mark.parametrize("text, expected", [
    ("1 + 2 * 3", ast.Binary("+", I(1), ast.Binary("*", I(2), I(3)))),
    ("(1 + 2) * 3", ast.Binary("*", ast.Binary("+", I(1), I(2)), I(3))),
    ("a - b - c", ast.Binary("-", ast.Binary("-", N("a"), N("b")), N("c"))),
    ("a / b % c", ast.Binary("%", ast.Binary("/", N("a"), N("b")), N("c"))),
    ("-a * b", ast.Binary("*", ast.Unary("-", N("a")), N("b"))),
    ("- -a", ast.Unary("-", ast.Unary("-", N("a")))),
    ("not a == b", ast.Unary("not", ast.Binary("==", N("a"), N("b")))),
    ("a or b and c", ast.Binary("or", N("a"), ast.Binary("and", N("b"), N("c")))),
    ("a != b", ast.Binary("!=", N("a"), N("b"))),
    ("a <= b + 1", ast.Binary("<=", N("a"), ast.Binary("+", N("b"), I(1)))),
    ("i == n / 3 or i == 2 * n / 3",
     ast.Binary("or", ast.Binary("==", N("i"), ast.Binary("/", N("n"), I(3))),
                ast.Binary("==", N("i"), ast.Binary("/", ast.Binary("*", I(2), N("n")), I(3))))),
    ("if r then 2 * c else c", ast.Cond(ast.Binary("*", I(2), N("c")), N("r"), N("c"))),
    ("if a then 1 else if b then 2 else 3",
     ast.Cond(I(1), N("a"), ast.Cond(I(2), N("b"), I(3)))),
    ("if a then 1 else 2 + 3", ast.Cond(I(1), N("a"), ast.Binary("+", I(2), I(3)))),
    ("min(a, max(b, 2))", call("min", N("a"), call("max", N("b"), I(2)))),
    ("007", I(7)),
    ("123456789012345678901234567890", I(123456789012345678901234567890)),
])
def test_expressions(text, expected):
    assert value(text) == expected


def test_calls_choice_and_keep():
    (a, b, c, d) = body("a = conv(x, 32, k=3, stride=2,)\n"
                        "b = sum(p, q) keep 2\n"
                        "c = choice(ops1, x, stride=s)\n"
                        "d = choice({ a, b(k=5), }, x)")
    assert a.values[0] == call("conv", N("x"), I(32), kwargs=[("k", I(3)), ("stride", I(2))])
    assert b.values[0] == call("sum", N("p"), N("q"), keep=I(2))
    assert c.values[0] == ast.Choice(N("ops1"), N("x"), (ast.Keyword("stride", N("s")),))
    assert d.values[0] == ast.Choice(
        ast.OpSetLit((ast.OpRef(N("a")), ast.OpRef(N("b"), (ast.Keyword("k", I(5)),)))), N("x"))
    (e,) = body("e = sum(a, b) keep (k + 1)")
    assert e.values[0].keep == ast.Binary("+", N("k"), I(1))


def test_newlines_and_comments_are_insignificant():
    one = parse("network { x = conv(image, 3, k=3) return x }", "t.das")
    two = parse("network\n{\n  x = conv(  # c\n image,\n 3,\n k\n=\n3)\n\n  return\n x\n}\n",
                "t.das")
    assert one == two


# ----------------------------------------------------------------------------------- spans


def test_spans():
    m = parse("param C = 16\nnetwork {\n  x = relu(conv(image, C))\n  return x\n}\n", "f.das")
    param, net = m.decls
    assert param.span == Span("f.das", 1, 1, 1, 13)
    assert param.name.span == Span("f.das", 1, 7, 1, 8)
    assert param.value.span == Span("f.das", 1, 11, 1, 13)
    assert net.span == Span("f.das", 2, 1, 5, 2)
    assign, ret = net.body
    assert assign.span == Span("f.das", 3, 3, 3, 27)
    relu = assign.values[0]
    assert relu.span == Span("f.das", 3, 7, 3, 27)
    assert relu.func.span == Span("f.das", 3, 7, 3, 11)
    assert relu.args[0].span == Span("f.das", 3, 12, 3, 26)
    assert ret.span == Span("f.das", 4, 3, 4, 11)


def test_every_node_has_a_real_span():
    text = (SPACES / "darts.das").read_text()
    m = parse(text, "darts.das")
    seen = 0
    stack = list(m.decls)
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
            continue
        if not hasattr(node, "__dataclass_fields__"):
            continue
        seen += 1
        assert node.span.file == "darts.das" and node.span.line >= 1, node
        stack.extend(getattr(node, f) for f in node.__dataclass_fields__ if f != "span")
    assert seen > 200


def test_comments_are_recorded_with_spans():
    m = parse("param a = 1  # one\n# two\n", "t.das")
    assert [(c.text, c.span.line, c.span.col) for c in m.comments] == [
        ("# one", 1, 14), ("# two", 2, 1)]


# ------------------------------------------------------------------------ errors, robustness


@pytest.mark.parametrize("word", sorted(KEYWORDS))
def test_keywords_cannot_be_names(word):
    with pytest.raises(ParseError) as info:
        parse(f"network {{\n  x = 1\n  {word}_ok = 2\n  y, {word} = 1, 2\n}}\n", "t.das")
    assert info.value.span.line == 4
    assert "keyword" in info.value.message


@pytest.mark.parametrize("word", ["param", "count", "in", "shared"])
def test_keyword_as_param_name_says_so(word):
    with pytest.raises(ParseError, match="keyword"):
        parse(f"param {word} = 3\n", "t.das")


def test_deep_nesting_is_a_parse_error():
    with pytest.raises(ParseError, match="nested too deeply"):
        parse("param a = " + "-" * 20000 + "1\n", "t.das")
    with pytest.raises(ParseError, match="nested too deeply"):
        parse("param a = " + "f(" * 5000 + "1" + ")" * 5000 + "\n", "t.das")
    with pytest.raises(ParseError, match="nested too deeply"):
        parse("network {" + " if a {" * 3000 + "}" * 3001, "t.das")


def test_moderate_nesting_and_redundant_parentheses_are_fine():
    assert parse("param a = " + "-" * (MAX_DEPTH // 3) + "1\n", "t.das")
    assert value("(" * 20000 + "1" + ")" * 20000) == I(1)


def test_huge_input_parses():
    n = 5000
    text = "".join(f"param p{i} = {i} + 1  # c{i}\n" for i in range(n))
    text += "network {\n  x = sum(" + ", ".join(f"p{i}" for i in range(n)) + ")\n}\n"
    m = parse(text, "big.das")
    assert len(m.decls) == n + 1 and len(m.comments) == n
    assert len(m.decls[-1].body[0].values[0].args) == n


def test_errors_never_leak_lark_exceptions():
    junk = ["(", ")", "{", "}", "[", "]", "=", "==", ",", ";", "..", "-", "x", "1", "1.5",
            '"s"', "if", "then", "else", "keep", "choice", "network", "cell", "#c\n", "\n",
            "@", "'", "!", "sum", "ops", "param", "search"]
    import random
    rng = random.Random(7)
    for _ in range(3000):
        text = " ".join(rng.choice(junk) for _ in range(rng.randint(1, 12)))
        try:
            parse(text, "fuzz.das")
        except ParseError as err:
            assert err.span is not None and err.span.line >= 1 and err.hint
            err.render(Sources())


def test_byte_order_mark_is_ignored():
    assert parse("\ufeffspace s\n", "t.das").decls == (ast.SpaceDecl(N("s")),)


# ---------------------------------------------------------------------------------- golden


def _golden_cases() -> list[str]:
    return sorted(p.stem for p in GOLDEN.glob("*.das"))


def test_enough_golden_cases():
    assert len(_golden_cases()) >= 15


@pytest.mark.parametrize("name", _golden_cases())
def test_golden_syntax_errors(name):
    text = (GOLDEN / f"{name}.das").read_text(encoding="utf-8")
    sources = Sources()
    sources.add(f"{name}.das", text)
    with pytest.raises(ParseError) as info:
        parse(text, f"{name}.das")
    rendered = info.value.render(sources) + "\n"
    expected = GOLDEN / f"{name}.expected"
    if os.environ.get("DASC_UPDATE_GOLDEN") == "1":
        expected.write_text(rendered, encoding="utf-8")
    assert expected.exists(), f"no golden file; run with DASC_UPDATE_GOLDEN=1 to create {expected}"
    assert rendered == expected.read_text(encoding="utf-8")
