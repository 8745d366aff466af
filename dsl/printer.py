"""AST -> canonical `.das` text (`dasc fmt`): `parse(format_module(m)) == m`, and idempotent.

Layout: two-space indent, one statement per line, a call too long for `MAX_WIDTH` columns is
wrapped one argument per line (so are long op sets), minimal parentheses by precedence.

Blank lines: one between top-level declarations, except between one-line declarations of the
same kind (params and the input, op sets, includes, constraints), where the author's grouping
is kept; inside bodies an author's blank line is kept (runs collapse to one).

Comments live outside the AST (`Module.comments`) and are placed by their spans: a comment
on its own line goes before the next declaration or statement; a comment after the last
statement of a body stays before the closing brace; a comment at the end of a statement's
last line stays there. A comment inside a multi-line expression (or a block header) moves to
its own line before that statement (or to the top of the block). Once moved, it stays: that
is what makes formatting idempotent.
"""

from __future__ import annotations

from dasc.dsl import ast
from dasc.errors import Span

MAX_WIDTH = 100
INDENT = "  "

_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_ATOM = 8
_GROUP = {ast.SpaceDecl: "space", ast.Include: "include", ast.ParamDecl: "param",
          ast.InputDecl: "param", ast.OpSetDecl: "ops", ast.PathConstraint: "constraint",
          ast.CountConstraint: "constraint"}
_BLOCKS = (ast.OpDecl, ast.CellDecl, ast.NetworkDecl, ast.SearchDecl, ast.For, ast.If)


def format_module(m: ast.Module) -> str:
    """The canonical text of a module (empty string for an empty one)."""
    printer = _Printer(m.comments)
    printer.sequence(m.decls, "", None, top=True)
    return "\n".join(printer.out) + "\n" if printer.out else ""


def format_expr(e: ast.Expr) -> str:
    """One expression on one line, e.g. for diagnostics that quote an argument."""
    return _expr(e)


# ----------------------------------------------------------------------------- expressions


def _prec(e: ast.Expr) -> int:
    if isinstance(e, ast.Cond):
        return 0
    if isinstance(e, ast.Binary):
        return _PREC[e.op]
    if isinstance(e, ast.Unary):
        return 3 if e.op == "not" else 7
    return _ATOM


def _wrap(e: ast.Expr, need: bool) -> str:
    return f"({_expr(e)})" if need else _expr(e)


def _expr(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value) if isinstance(e.value, float) else str(e.value)
    if isinstance(e, ast.Str):
        return _string(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Binary):
        p = _PREC[e.op]
        left_need = _prec(e.left) <= p if p == 4 else _prec(e.left) < p
        return f"{_wrap(e.left, left_need)} {e.op} {_wrap(e.right, _prec(e.right) <= p)}"
    if isinstance(e, ast.Unary):
        if e.op == "not":
            return f"not {_wrap(e.operand, _prec(e.operand) < 3)}"
        return f"-{_wrap(e.operand, _prec(e.operand) < 7)}"
    if isinstance(e, ast.Cond):
        return f"if {_expr(e.test)} then {_expr(e.then)} else {_expr(e.orelse)}"
    head, items, tail = _call_parts(e)
    return head + ", ".join(prefix + (_expr(x) if not isinstance(x, str) else x)
                            for prefix, x in items) + tail


def _call_parts(e: ast.Call | ast.Choice) -> tuple[str, list[tuple[str, object]], str]:
    """`f(`, the items (keyword prefix, expression or pre-rendered text), `) keep k`."""
    if isinstance(e, ast.Choice):
        opset = e.opset.id if isinstance(e.opset, ast.Name) else _opset_flat(e.opset.members)
        items: list[tuple[str, object]] = [("", opset), ("", e.arg)]
        items += [(f"{kw.name}=", kw.value) for kw in e.kwargs]
        return "choice(", items, ")"
    items = [("", a) for a in e.args] + [(f"{kw.name}=", kw.value) for kw in e.kwargs]
    tail = ")"
    if e.keep is not None:
        tail += f" keep {_wrap(e.keep, _prec(e.keep) < _ATOM)}"
    return f"{e.func.id}(", items, tail


def _opref(r: ast.OpRef) -> str:
    if not r.kwargs:
        return r.name.id
    return f"{r.name.id}({', '.join(f'{kw.name}={_expr(kw.value)}' for kw in r.kwargs)})"


def _opset_flat(members: tuple[ast.OpRef, ...]) -> str:
    return "{ " + ", ".join(_opref(r) for r in members) + " }"


def _string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + out.replace("\t", "\\t") + '"'


def _layout(e: ast.Expr, indent: str, prefix: str, suffix: str = "") -> list[str]:
    """Lines for `prefix + e + suffix` at `indent`, breaking a long call one item per line."""
    flat = indent + prefix + _expr(e) + suffix
    if len(flat) <= MAX_WIDTH or not isinstance(e, (ast.Call, ast.Choice)):
        return [flat]
    head, items, tail = _call_parts(e)
    if not items:
        return [flat]
    lines = [indent + prefix + head]
    inner = indent + INDENT
    for i, (kw, item) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(item, str):
            lines.append(inner + kw + item + comma)
        else:
            lines += _layout(item, inner, kw, comma)
    lines.append(indent + tail + suffix)
    return lines


# ------------------------------------------------------------------------------ statements


def _before(a: Span, line: int, col: int) -> bool:
    return (a.line, a.col) < (line, col)


class _Printer:
    """Writes lines to `out`, taking comments from the queue as it passes their positions."""

    def __init__(self, comments: tuple[ast.Comment, ...]) -> None:
        self.comments = sorted(comments, key=lambda c: (c.span.line, c.span.col))
        self.next = 0
        self.out: list[str] = []

    def take(self, line: int, col: int) -> list[ast.Comment]:
        taken = []
        while self.next < len(self.comments) and _before(self.comments[self.next].span,
                                                         line, col):
            taken.append(self.comments[self.next])
            self.next += 1
        return taken

    def trailing(self, span: Span, limit: int | None) -> bool:
        """Is the next comment at the end of `span`'s last line, with no code after `span`?

        `limit` is the line where the next code starts (a sibling or the closing brace).
        """
        if self.next >= len(self.comments) or span.line <= 0:
            return False
        line = self.comments[self.next].span.line
        return line == span.end_line and (limit is None or limit > line)

    def pending_before(self, span: Span) -> bool:
        return self.next < len(self.comments) and \
            _before(self.comments[self.next].span, span.line, span.col)

    def sequence(self, nodes, indent: str, close: Span | None, top: bool = False) -> None:
        """Emit declarations or statements with their comments, up to the closing brace."""
        prev_node = None
        prev_line = None  # the source line the previous emitted item ended on
        for index, node in enumerate(nodes):
            span = node.span
            limit = nodes[index + 1].span.line if index + 1 < len(nodes) else \
                close.end_line if close is not None else None
            simple = not isinstance(node, _BLOCKS)
            lead = self.take(span.end_line, span.end_col) if simple else \
                self.take(span.line, span.col)
            saved, self.out = self.out, []
            self.node(node, indent)
            body, self.out = self.out, saved
            if self.trailing(span, limit):
                body[-1] += "  " + self.comments[self.next].text
                self.next += 1
            force = top and prev_node is not None and not (
                len(body) == 1 and prev_single and
                _GROUP.get(type(node), id(node)) == _GROUP.get(type(prev_node), 0))
            first = True
            for item_line, text in [(c.span.line, c.text) for c in lead] + [(span.line, None)]:
                gap = prev_line is not None and item_line > prev_line + 1
                if (first and force) or gap:
                    self.out.append("")
                first = False
                if text is not None:
                    self.out.append(indent + text)
                    prev_line = item_line
            self.out += body
            prev_node, prev_single, prev_line = node, len(body) == 1, span.end_line
            if prev_line <= 0:
                prev_line = None
        rest = self.take(close.end_line, close.end_col - 1) if close is not None else \
            self.take(1 << 62, 0)
        for c in rest:
            if prev_line is not None and c.span.line > prev_line + 1:
                self.out.append("")
            self.out.append(indent + c.text)
            prev_line = c.span.line

    def block(self, header: str, body, indent: str, close: Span) -> None:
        self.out.append(indent + header + " {")
        self.sequence(body, indent + INDENT, close)
        self.out.append(indent + "}")

    def node(self, n, indent: str) -> None:
        out = self.out
        if isinstance(n, ast.Assign):
            prefix = ", ".join(t.id for t in n.targets) + " = "
            if len(n.values) == 1:
                out += _layout(n.values[0], indent, prefix)
            else:
                out.append(indent + prefix + ", ".join(_expr(v) for v in n.values))
        elif isinstance(n, ast.Return):
            out += _layout(n.value, indent, "return ")
        elif isinstance(n, ast.For):
            header = f"for {n.var.id} in {_expr(n.lo)} .. {_expr(n.hi)}"
            self.block(header, n.body, indent, n.span)
        elif isinstance(n, ast.If):
            self.if_(n, indent, "if")
        elif isinstance(n, ast.OpSetDecl):
            flat = f"{indent}ops {n.name.id} = {_opset_flat(n.members)}"
            if len(flat) <= MAX_WIDTH:
                out.append(flat)
            else:
                out.append(f"{indent}ops {n.name.id} = {{")
                out += [indent + INDENT + _opref(r) + ("," if i < len(n.members) - 1 else "")
                        for i, r in enumerate(n.members)]
                out.append(indent + "}")
        elif isinstance(n, ast.SpaceDecl):
            out.append(f"space {n.name.id}")
        elif isinstance(n, ast.Include):
            out.append(f"include {_string(n.path.value)}")
        elif isinstance(n, ast.ParamDecl):
            out += _layout(n.value, indent, f"param {n.name.id} = ")
        elif isinstance(n, ast.InputDecl):
            out.append(f"input {n.name.id} [{', '.join(_expr(d) for d in n.dims)}]")
        elif isinstance(n, ast.OpDecl):
            self.block(f"op {n.name.id}{_signature(n.sig)}", n.body, indent, n.span)
        elif isinstance(n, ast.CellDecl):
            sharing = n.sharing
            if n.share_per:
                sharing += " per " + ", ".join(p.id for p in n.share_per)
            header = f"cell {n.name.id}{_signature(n.sig)} {sharing}"
            self.block(header, n.body, indent, n.span)
        elif isinstance(n, ast.NetworkDecl):
            self.block("network", n.body, indent, n.span)
        elif isinstance(n, ast.PathConstraint):
            scope = f" in {n.scope.id}" if n.scope is not None else ""
            out.append(f"constraint paths{scope} >= {_expr(n.min_nonskip)}")
        elif isinstance(n, ast.CountConstraint):
            scope = f" in {n.scope.id}" if n.scope is not None else ""
            out.append(f"constraint count {n.op.id}{scope} <= {_expr(n.max_count)}")
        elif isinstance(n, ast.SearchDecl):
            self.block("search", n.settings, indent, n.span)
        elif isinstance(n, ast.Setting):
            out.append(f"{indent}{n.key.id} = {_expr(n.value)}")
        else:
            raise TypeError(f"not a declaration or statement: {type(n).__name__}")

    def if_(self, n: ast.If, indent: str, keyword: str) -> None:
        """`if`, with `else if` for an else branch that is exactly one `if` statement."""
        if keyword == "if":
            self.out.append(f"{indent}if {_expr(n.test)} {{")
        else:
            self.out[-1] += f" else if {_expr(n.test)} {{"
        self.sequence(n.then, indent + INDENT, n.then_span)
        self.out.append(indent + "}")
        if not n.orelse:
            return
        only = n.orelse[0]
        if len(n.orelse) == 1 and isinstance(only, ast.If) and not self.pending_before(only.span):
            self.if_(only, indent, "else if")
            return
        self.out[-1] += " else {"
        self.sequence(n.orelse, indent + INDENT, n.span)
        self.out.append(indent + "}")


def _signature(sig: ast.Signature) -> str:
    text = ", ".join(p.name.id for p in sig.tensors)
    if sig.ints:
        ints = [p.name.id + (f"={_expr(p.default)}" if p.default is not None else "")
                for p in sig.ints]
        text += "; " + ", ".join(ints)
    return f"({text})"
