"""Text -> AST: a Lark LALR parse followed by a transformer that builds the frozen dataclasses.

Everything that can go wrong comes out as `ParseError` with a span: Lark's own exceptions are
translated in `dasc.dsl.syntax_errors`, and the few rules that a context-free grammar states
badly (a float where an integer belongs, `keep` on something other than `sum`, arity of
simultaneous assignment) are checked here, where the offending node's position is known.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError
from lark.visitors import Transformer_NonRecursive

from dasc.dsl import ast
from dasc.dsl.syntax_errors import translate
from dasc.errors import DascError, ParseError, Span

#: Deeper parse trees are refused: later stages walk the AST recursively, and no real space
#: comes near this (the DARTS space is about 12 levels deep).
MAX_DEPTH = 150

#: Longer files are refused before parsing: LALR parsing in Python costs 10-40 microseconds
#: per token, so a 10 MB file would take minutes and 1 MB up to half a minute; a real space
#: is a few kilobytes (DARTS: 2.6 kB), so this bounds any input to a few seconds.
MAX_SOURCE_CHARS = 256_000

KEYWORDS = frozenset(
    "space include param input ops op cell network constraint search for in if then else "
    "return keep choice shared per independent paths count and or not".split()
)

_local = threading.local()


def _record_comment(tok: Token) -> None:
    sink = getattr(_local, "comments", None)
    if sink is not None:
        sink.append(tok)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """The parser tables are built once per process; they hold no state about any input."""
    grammar = resources.files("dasc.dsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True,
                maybe_placeholders=True, lexer_callbacks={"COMMENT": _record_comment})


def parse(text: str, file: str) -> ast.Module:
    """Parse one `.das` text; `file` is only used in spans."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_SOURCE_CHARS:
        raise ParseError(f"the file is too long ({len(text):,} characters; the limit is "
                         f"{MAX_SOURCE_CHARS:,})", Span.of_file(file),
                         "a space is a page of text: repeat cells with `for` loops and "
                         "parameters instead of writing the network out")
    _local.comments = comments = []
    try:
        try:
            tree = _lark().parse(text)
        except UnexpectedInput as exc:
            raise translate(exc, text, file, _lark()) from None
        finally:
            _local.comments = None
        _check_depth(tree, file)
        try:
            decls = _Builder(file).transform(tree)
        except VisitError as exc:
            if isinstance(exc.orig_exc, DascError):
                raise exc.orig_exc from None
            raise
    except RecursionError:
        raise ParseError("expression nested too deeply", Span.of_file(file),
                         "split it into several assignments") from None
    notes = tuple(ast.Comment(str(t).rstrip(), _tok_span(file, t)) for t in comments)
    return ast.Module(tuple(decls), file, notes)


def _int(digits: str, span: Span) -> int:
    """An INT token's value; checked by length first, since converting a 100,000-digit literal
    is itself slow (and refused outright by Python's default int-string limit)."""
    if len(digits.lstrip("0")) > ast.MAX_INT_DIGITS:
        shown = digits if len(digits) <= 24 else f"{digits[:12]}...{digits[-6:]}"
        raise ParseError(f"the integer {shown} ({len(digits):,} digits) is too large", span,
                         f"integers in a space have at most {ast.MAX_INT_DIGITS} digits")
    return int(digits)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _check_depth(tree: Tree, file: str) -> None:
    """Refuse absurdly deep nesting before anything recursive touches the tree."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            span = Span(file, meta.line, meta.column, meta.line, meta.column + 1)
            raise ParseError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", span,
                             "split it into several assignments")
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))


def unescape(raw: str, span: Span) -> str:
    """The value of a string token: `\\"`, `\\\\`, `\\n` and `\\t` are the only escapes."""
    out: list[str] = []
    body = raw[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                col = span.col + 1 + i
                raise ParseError(f"unknown escape '\\{nxt}' in string",
                                 Span(span.file, span.line, col, span.line, col + 2),
                                 'only \\", \\\\, \\n and \\t are escapes; write \\\\ for a backslash')
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}

_BINARY = {"or_": "or", "and_": "and", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
           "gt": ">", "ge": ">=", "add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}


class _Block:
    """A `{ ... }` body while building: its statements and the span of its braces."""

    __slots__ = ("stmts", "span")

    def __init__(self, stmts: tuple, span: Span) -> None:
        self.stmts = stmts
        self.span = span


def _binary(op: str):
    def build(self, meta, ch):
        return ast.Binary(op, ch[0], ch[1], self._span(meta))
    return build


@v_args(meta=True)
class _Builder(Transformer_NonRecursive):
    """Parse tree -> AST. Bottom-up and iterative, so long inputs cannot exhaust the stack."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), _tok_span(self.file, tok))

    # ------------------------------------------------------------------------ declarations

    def start(self, meta, ch):
        return tuple(ch)

    def space_decl(self, meta, ch):
        return ast.SpaceDecl(self._name(ch[0]), self._span(meta))

    def include_decl(self, meta, ch):
        span = _tok_span(self.file, ch[0])
        return ast.Include(ast.Str(unescape(str(ch[0]), span), span), self._span(meta))

    def param_decl(self, meta, ch):
        return ast.ParamDecl(self._name(ch[0]), ch[1], self._span(meta))

    def input_decl(self, meta, ch):
        dims = ch[1]
        if len(dims) != 3:
            raise ParseError(f"an input shape has 3 dimensions [channels, height, width], "
                             f"not {len(dims)}", self._span(meta),
                             "write e.g. `input image [3, 32, 32]` (the batch is implied)")
        return ast.InputDecl(self._name(ch[0]), tuple(dims), self._span(meta))

    def opset_decl(self, meta, ch):
        return ast.OpSetDecl(self._name(ch[0]), ch[1].members, self._span(meta))

    def op_decl(self, meta, ch):
        return ast.OpDecl(self._name(ch[0]), ch[1], ch[2].stmts, self._span(meta))

    def cell_decl(self, meta, ch):
        sharing, per = ch[2] if ch[2] is not None else ("shared", ())
        return ast.CellDecl(self._name(ch[0]), ch[1], sharing, per, ch[3].stmts,
                            self._span(meta))

    def network_decl(self, meta, ch):
        return ast.NetworkDecl(ch[0].stmts, self._span(meta))

    def path_constraint(self, meta, ch):
        scope = self._name(ch[0]) if ch[0] is not None else None
        return ast.PathConstraint(scope, ch[1], self._span(meta))

    def count_constraint(self, meta, ch):
        scope = self._name(ch[1]) if ch[1] is not None else None
        return ast.CountConstraint(self._name(ch[0]), scope, ch[2], self._span(meta))

    def search_decl(self, meta, ch):
        return ast.SearchDecl(tuple(ch), self._span(meta))

    def setting(self, meta, ch):
        return ast.Setting(self._name(ch[0]), ch[1], self._span(meta))

    def setting_number(self, meta, ch):
        tok = ch[0]
        span = _tok_span(self.file, tok)
        value = _int(tok, span) if tok.type == "INT" else float(tok)
        return ast.Num(value, span)

    def negative(self, meta, ch):
        return ast.Num(-ch[0].value, self._span(meta))

    def string(self, meta, ch):
        span = _tok_span(self.file, ch[0])
        return ast.Str(unescape(str(ch[0]), span), span)

    def shared(self, meta, ch):
        return ("shared", ())

    def shared_per(self, meta, ch):
        return ("shared", tuple(self._name(t) for t in ch))

    def independent(self, meta, ch):
        return ("independent", ())

    def signature(self, meta, ch):
        return ast.Signature(ch[0], ch[1] or (), self._span(meta))

    def tensor_params(self, meta, ch):
        return tuple(ast.Param(self._name(t), None, _tok_span(self.file, t)) for t in ch)

    def int_params(self, meta, ch):
        return tuple(ch)

    def int_param(self, meta, ch):
        return ast.Param(self._name(ch[0]), ch[1], self._span(meta))

    def opset_lit(self, meta, ch):
        members = tuple(m for m in ch if m is not None)
        if not members:
            raise ParseError("empty op set", self._span(meta),
                             "list at least one op, e.g. { skip_connect, sep_conv_3x3 }")
        return ast.OpSetLit(members, self._span(meta))

    def opref(self, meta, ch):
        args = ch[1] or ()
        for arg in args:
            if not isinstance(arg, ast.Keyword):
                raise ParseError(f"op-set member '{ch[0]}' binds arguments by keyword only",
                                 arg.span, f"write e.g. {ch[0]}(c=32) instead of {ch[0]}(32)")
        return ast.OpRef(self._name(ch[0]), _check_kwargs(args), self._span(meta))

    # -------------------------------------------------------------------------- statements

    def block(self, meta, ch):
        return _Block(tuple(ch), self._span(meta))

    def assign(self, meta, ch):
        targets, values = ch
        if len(targets) != len(values):
            raise ParseError(f"{_count(len(targets), 'name')} on the left of '=' but "
                             f"{_count(len(values), 'value')} on the right", self._span(meta),
                             "give one value per name: `a, b = x, y`")
        return ast.Assign(targets, values, self._span(meta))

    def targets(self, meta, ch):
        return tuple(self._name(t) for t in ch)

    def for_stmt(self, meta, ch):
        return ast.For(self._name(ch[0]), ch[1], ch[2], ch[3].stmts, self._span(meta))

    def if_stmt(self, meta, ch):
        test, then, orelse = ch
        if orelse is None:
            rest: tuple = ()
        elif isinstance(orelse, _Block):
            rest = orelse.stmts
        else:
            rest = (orelse,)
        return ast.If(test, then.stmts, rest, self._span(meta), then.span)

    def return_stmt(self, meta, ch):
        return ast.Return(ch[0], self._span(meta))

    # ------------------------------------------------------------------------- expressions

    def exprs(self, meta, ch):
        return tuple(e for e in ch if e is not None)

    def cond(self, meta, ch):
        return ast.Cond(ch[1], ch[0], ch[2], self._span(meta))

    def not_(self, meta, ch):
        return ast.Unary("not", ch[0], self._span(meta))

    def neg(self, meta, ch):
        return ast.Unary("-", ch[0], self._span(meta))

    for _alias, _op in _BINARY.items():
        locals()[_alias] = _binary(_op)
    del _alias, _op

    def name(self, meta, ch):
        return self._name(ch[0])

    def int_(self, meta, ch):
        span = self._span(meta)
        return ast.Num(_int(ch[0], span), span)

    def float_(self, meta, ch):
        raise ParseError(f"a float ({ch[0]}) where an integer belongs", self._span(meta),
                         "channels, sizes and op arguments are integers; floats are only "
                         "allowed in search { } settings")

    def args(self, meta, ch):
        return tuple(a for a in ch if a is not None)

    def kwarg(self, meta, ch):
        return ast.Keyword(str(ch[0]), ch[1], self._span(meta))

    def call(self, meta, ch):
        func, args, keep = self._name(ch[0]), ch[1] or (), ch[2]
        pos, kws = _split_args(args)
        if keep is not None and func.id != "sum":
            raise ParseError(f"'keep' selects inputs of sum(...), not of {func.id}(...)",
                             self._span(meta), "write sum(a, b, ...) keep K")
        return ast.Call(func, pos, kws, keep, self._span(meta))

    def choice(self, meta, ch):
        opset = self._name(ch[0]) if isinstance(ch[0], Token) else ch[0]
        pos, kws = _split_args(ch[1] or ())
        if len(pos) != 1:
            what = "no tensor" if not pos else f"{len(pos)} positional arguments"
            raise ParseError(f"choice(...) takes an op set and one tensor, got {what}",
                             self._span(meta),
                             "write choice(SET, x, stride=2): integer arguments by keyword")
        return ast.Choice(opset, pos[0], kws, self._span(meta))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _split_args(args: tuple) -> tuple[tuple, tuple]:
    """Positional arguments first, then keywords, each keyword at most once."""
    pos: list = []
    kws: list[ast.Keyword] = []
    for arg in args:
        if isinstance(arg, ast.Keyword):
            kws.append(arg)
        elif kws:
            raise ParseError("positional argument after a keyword argument", arg.span,
                             "put tensors and positional integers before `name=value` ones")
        else:
            pos.append(arg)
    return tuple(pos), _check_kwargs(tuple(kws))


def _check_kwargs(kws: tuple) -> tuple:
    seen: set[str] = set()
    for kw in kws:
        if kw.name in seen:
            raise ParseError(f"keyword argument '{kw.name}' given twice", kw.span,
                             "remove one of them")
        seen.add(kw.name)
    return kws
