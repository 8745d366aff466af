"""Lark's syntax exceptions -> one friendly `ParseError` each, with a precise span and a hint.

LALR's own "expected" sets are loose (a state with a default reduction lists every follower),
so the parser state is replayed with `accepts()` to learn which tokens could really come next;
the rules below then recognise the usual mistakes from (found token, acceptable tokens, the
tokens around it). Anything unrecognised still gets a located "unexpected X; expected Y".
"""

from __future__ import annotations

import difflib

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dasc.errors import ParseError, Span

_DECL_KEYWORDS = ("space", "include", "param", "input", "ops", "op", "cell", "network",
                  "constraint", "search")
_STMT_STARTS = {"NAME", "for", "if", "return", "ops"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
_OPEN = {"(": ")", "{": "}", "[": "]"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_ATOM_STARTS = {"NAME", "INT", "FLOAT", "STRING", "choice", "not"}
_KIND = {"NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
         "$END": "end of file"}
_EXPR_STARTS = {"NAME", "INT", "FLOAT", "(", "-", "not", "if", "choice"}
_LOOKALIKE = {"\u00d7": "*", "\u2212": "-", "\u2013": "-", "\u201c": '"', "\u201d": '"',
              "\u2018": "'", "\u2019": "'", "\u2264": "<=", "\u2265": ">=", "\u2260": "!="}
_WORD = {"NAME": "name", "INT": "integer", "FLOAT": "number", "STRING": "string"}
_STRAY = {
    "&": ("'&' is not an operator", "write 'and' for a logical and"),
    "|": ("'|' is not an operator", "write 'or' for a logical or"),
    "!": ("'!' is not an operator", "write 'not x' for negation, '!=' for inequality"),
    ":": ("unexpected ':'", "blocks are written with braces: `network { ... }`"),
    "'": ("strings use double quotes", 'write "like this"'),
    ".": ("unexpected '.'", "'.' only appears in ranges (`0 .. n`) and in float numbers"),
}


def translate(exc: UnexpectedInput, text: str, file: str, lark: Lark) -> ParseError:
    """The ParseError for one Lark exception; never raises anything else."""
    try:
        if isinstance(exc, UnexpectedCharacters):
            return _bad_character(exc, text, file)
        if isinstance(exc, UnexpectedToken):
            return _Context(exc, text, file, lark).diagnose()
    except Exception:  # noqa: BLE001 - a diagnostic bug must not hide the user's mistake
        pass
    line, col = max(1, getattr(exc, "line", 1) or 1), max(1, getattr(exc, "column", 1) or 1)
    return ParseError("syntax error", Span(file, line, col, line, col + 1),
                      "see docs/language.md for the syntax")


def _bad_character(exc: UnexpectedCharacters, text: str, file: str) -> ParseError:
    ch = text[exc.pos_in_stream]
    line, col = exc.line, exc.column
    if ch == '"':
        end = text.find("\n", exc.pos_in_stream)
        end = len(text) if end < 0 else end
        width = max(1, len(text[exc.pos_in_stream:end].rstrip("\r")))
        return ParseError("unterminated string", Span(file, line, col, line, col + width),
                          "close the string with '\"' on the same line")
    span = Span(file, line, col, line, col + 1)
    if ch in _STRAY:
        message, hint = _STRAY[ch]
        return ParseError(message, span, hint)
    shown = repr(ch)[1:-1] if ch.isprintable() else f"U+{ord(ch):04X}"
    if ch in _LOOKALIKE:
        hint = f"did you mean '{_LOOKALIKE[ch]}'?"
    elif ch.isascii():
        hint = "remove it"
    else:
        hint = "remove it; .das files use ASCII outside comments and strings"
    return ParseError(f"unexpected character '{shown}'", span, hint)


class _Context:
    """One unexpected token with its neighbours and what the parser would have accepted."""

    def __init__(self, exc: UnexpectedToken, text: str, file: str, lark: Lark) -> None:
        self.file = file
        self.tok = exc.token
        self.literals = {t.name: t.pattern.value for t in lark.terminals
                         if type(t.pattern).__name__ == "PatternStr"}
        try:
            accepts = exc.interactive_parser.accepts()
        except Exception:  # noqa: BLE001 - fall back to Lark's looser set
            accepts = set(exc.expected)
        self.accepts = {self._sym(name) for name in accepts}
        self.found = self._sym(self.tok.type)
        self.before, self.after = _neighbours(lark, text, self.tok)

    def _sym(self, term: str) -> str:
        return self.literals.get(term, term)

    # ------------------------------------------------------------------------------ helpers

    def span(self) -> Span:
        tok = self.tok
        if tok.type == "$END":
            line, col = tok.end_line or tok.line or 1, tok.end_column or tok.column or 1
            return Span(self.file, line, col, line, col + 1)
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def describe(self, sym: str | None = None, value: str | None = None) -> str:
        sym = self.found if sym is None else sym
        value = str(self.tok) if value is None else value
        if sym in _WORD:
            return f"{_WORD[sym]} {value}" if sym != "NAME" else f"name '{value}'"
        if sym == "$END":
            return "end of file"
        if sym.isalpha():
            return f"keyword '{sym}'"
        return f"'{sym}'"

    def expected(self) -> str:
        if {"NAME", "INT", "("} <= self.accepts:
            rest = self.accepts - _EXPR_STARTS - {"$END"}
            return "an expression" + (" or " + ", ".join(f"'{s}'" for s in sorted(rest))
                                      if rest else "")
        order = sorted(self.accepts - {"$END", "FLOAT"}, key=lambda s: (s in _KIND, s))
        shown = [_KIND.get(s, f"'{s}'") for s in order[:8]]
        if len(order) > 8:
            shown.append("...")
        return ", ".join(shown) or "end of file"

    def unclosed(self, kinds: str) -> Token | None:
        stack: list[Token] = []
        for tok in self.before:
            if tok.value in _OPEN:
                stack.append(tok)
            elif tok.value in _CLOSE and stack:
                stack.pop()
        for tok in reversed(stack):
            if tok.value in kinds:
                return tok
        return None

    def new_line(self) -> bool:
        return bool(self.before) and self.before[-1].end_line < (self.tok.line or 0)

    def error(self, message: str, hint: str, span: Span | None = None) -> ParseError:
        return ParseError(message, span or self.span(), hint)

    # ---------------------------------------------------------------------------- the rules

    def diagnose(self) -> ParseError:
        for rule in (self.at_end, self.keyword_as_name, self.stray_else, self.elif_,
                     self.assign_vs_compare, self.missing_closer, self.missing_comma, self.conditional, self.missing_eq,
                     self.comparison, self.misc_punctuation, self.top_level):
            err = rule()
            if err is not None:
                return err
        return self.error(f"unexpected {self.describe()}; expected {self.expected()}",
                          "check the syntax of this statement in docs/language.md")

    def at_end(self) -> ParseError | None:
        if self.found != "$END":
            return None
        for closer in ("}", ")", "]"):
            if closer in self.accepts:
                opener = self.unclosed(_CLOSE[closer])
                if opener is not None:
                    span = Span(self.file, opener.line, opener.column, opener.end_line,
                                opener.end_column)
                    return self.error(f"this '{opener.value}' is never closed (the file ends "
                                      f"first)", f"add the matching '{closer}'", span)
        return self.error(f"unexpected end of file; expected {self.expected()}",
                          "the last declaration is incomplete")

    def stray_else(self) -> ParseError | None:
        if self.found in ("else", "then") and self.found not in self.accepts:
            return self.error(f"'{self.found}' without a matching 'if'",
                              "write `if TEST { ... } else { ... }` or, in an expression, "
                              "`if TEST then A else B`")
        return None

    def assign_vs_compare(self) -> ParseError | None:
        if self.found == "==" and "=" in self.accepts and "==" not in self.accepts:
            return self.error("'==' compares; use '=' to assign", "write `name = value`")
        if self.found == "=" and "==" in self.accepts:
            return self.error("'=' assigns; use '==' to compare", "write `if a == b { ... }`")
        return None

    def missing_closer(self) -> ParseError | None:
        closers = [c for c in ("}", ")", "]") if c in self.accepts]
        if not closers or self.found in self.accepts:
            return None
        decl_start = self.found in _DECL_KEYWORDS and self.found != "ops"
        assign_start = self.found == "NAME" and self.after is not None \
            and self.after.value in ("=", ",")
        stmt_start = self.found in ("return", "for", "if") or assign_start
        if not (decl_start or stmt_start or self.found in _CLOSE):
            if "," in self.accepts and self.found in _ATOM_STARTS or not self.new_line():
                return None  # more likely a missing comma
        for closer in closers:
            opener = self.unclosed(_CLOSE[closer])
            if opener is not None:
                return self.error(f"expected '{closer}' before {self.describe()}",
                                  f"the '{opener.value}' at line {opener.line}, column "
                                  f"{opener.column} is not closed")
        if self.found in _CLOSE:
            return self.error(f"unmatched '{self.found}'", "it closes nothing; remove it")
        return None

    def missing_comma(self) -> ParseError | None:
        if "," in self.accepts and self.found in _ATOM_STARTS | {"(", "-"} \
                and self.found not in self.accepts:
            prev = self.before[-1].value if self.before else ""
            return self.error(f"missing ',' between '{prev}' and {self.describe()}",
                              "separate the items of a list with commas")
        return None

    def elif_(self) -> ParseError | None:
        prev = self.before[-1] if self.before else None
        if prev is not None and prev.value == "elif" and self.found not in self.accepts:
            return self.error("'elif' is not a keyword", "write `else if TEST { ... }`",
                              Span(self.file, prev.line, prev.column, prev.end_line,
                                   prev.end_column))
        return None

    def keyword_as_name(self) -> ParseError | None:
        named = self.after is not None and self.after.value in ("=", ",")
        if self.found in _DECL_KEYWORDS and "}" in self.accepts and not named:
            return None  # a declaration after a block that was not closed
        if self.found in ("else", "then") and not named:
            return None
        if self.found.isalpha() and self.found == str(self.tok) and "NAME" in self.accepts \
                and self.found not in self.accepts:
            return self.error(f"'{self.found}' is a keyword and cannot be used as a name",
                              f"rename it, e.g. '{self.found}_'")
        return None

    def conditional(self) -> ParseError | None:
        for word in ("then", "else"):
            if word in self.accepts and self.found not in self.accepts:
                return self.error(f"expected '{word}' before {self.describe()}",
                                  "a conditional expression is `if TEST then A else B`")
        return None

    def missing_eq(self) -> ParseError | None:
        if "=" not in self.accepts or self.found in self.accepts:
            return None
        prev = self.before[-1] if self.before else None
        after = f"after '{prev.value}' " if prev is not None else ""
        return self.error(f"missing '=' {after}before {self.describe()}",
                          "parameters, settings and assignments are written `name = value`")

    def comparison(self) -> ParseError | None:
        if ">=" in self.accepts and self.found in _COMPARISONS:
            return self.error(f"a path constraint is written with '>=', not '{self.found}'",
                              "write `constraint paths [in CELL] >= K`")
        if "<=" in self.accepts and self.found in _COMPARISONS and "<" not in self.accepts:
            return self.error(f"a count constraint is written with '<=', not '{self.found}'",
                              "write `constraint count OP [in CELL] <= K`")
        if self.found in _COMPARISONS and "and" in self.accepts:
            return self.error("comparisons cannot be chained",
                              "write `a < b and b < c`")
        return None

    def misc_punctuation(self) -> ParseError | None:
        if self.found == ";":
            return self.error("unexpected ';'", "statements need no terminator; ';' only "
                              "separates tensor from integer parameters in a signature")
        if self.found == "{" and ".." in self.accepts:
            return self.error("a for loop needs a range `lo .. hi`",
                              "write `for i in 0 .. n { ... }` (n itself excluded)")
        if {"shared", "independent"} <= self.accepts:
            return self.error(f"expected 'shared', 'shared per NAME', 'independent' or '{{', "
                              f"got {self.describe()}",
                              "cell sharing is `shared`, `shared per P, Q` or `independent`")
        return None

    def top_level(self) -> ParseError | None:
        if not self.accepts or not self.accepts <= set(_DECL_KEYWORDS) | {"$END"}:
            return None
        if self.found in _STMT_STARTS - {"NAME"} or (
                self.found == "NAME" and self.after is not None
                and self.after.value in ("=", ",")):
            return self.error(f"{self.describe()} starts a statement outside any body",
                              "statements go inside `network { }`, a cell or an op")
        if self.found in _CLOSE:
            return self.error(f"unmatched '{self.found}'", "it closes nothing; remove it")
        if self.found == "NAME":
            close = difflib.get_close_matches(str(self.tok), _DECL_KEYWORDS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                "a file is a list of declarations: " + ", ".join(_DECL_KEYWORDS)
            return self.error(f"expected a declaration, got {self.describe()}", hint)
        return None


def _neighbours(lark: Lark, text: str, tok: Token) -> tuple[list[Token], Token | None]:
    """The tokens before `tok` and the one after it (re-lexed: Lark keeps no history)."""
    before: list[Token] = []
    after = None
    start = tok.start_pos if tok.type != "$END" else len(text)
    try:
        for t in lark.lex(text):
            if t.start_pos < start:
                before.append(t)
            elif t.start_pos > start:
                after = t
                break
    except UnexpectedInput:
        pass
    return before, after
