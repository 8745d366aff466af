"""Parse and print DARTS genotype strings without `eval`.

Why hand-written: genotype strings arrive from users and log files; evaluating them as Python
would execute arbitrary code, and the oracle must not depend on dasc's own parser (it is what we
are checking). The accepted form is what the DARTS reference code prints and what its
`genotypes.py` files contain:

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=range(2, 6))

Concats may be lists/tuples of ints or `range(a, b)` / `range(b)`; fields may be given by keyword
(any order) or positionally; whitespace, newlines, `#` comments and trailing commas are ignored;
an optional `Genotype = ` / `NAME = ` assignment prefix is accepted (as in genotypes.py files).
"""
from __future__ import annotations

import re
from collections import namedtuple

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

FIELDS = Genotype._fields

_TOKEN = re.compile(
    r"""(?P<ws>\s+|\#[^\n]*)
      |(?P<name>[A-Za-z_][A-Za-z_0-9]*)
      |(?P<int>-?\d+)
      |(?P<str>'[^'\n]*'|"[^"\n]*")
      |(?P<punct>[()\[\],=])""",
    re.VERBOSE,
)


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split into (kind, value, offset) tokens; raise ValueError at the first unknown char."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"genotype: unexpected character {text[pos]!r} at offset {pos}")
        kind = m.lastgroup
        if kind != "ws":
            value = m.group(kind)
            if kind == "str":
                value = value[1:-1]
            out.append((kind, value, pos))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the token list; every method consumes exactly its construct."""

    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "", -1)

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            want = value if value is not None else kind
            raise ValueError(f"genotype: expected {want!r}, found {tok[1] or 'end'!r} at offset {tok[2]}")
        self.i += 1
        return tok[1]

    def accept(self, kind: str, value: str) -> bool:
        tok = self.peek()
        if tok[0] == kind and tok[1] == value:
            self.i += 1
            return True
        return False

    def genotype(self) -> Genotype:
        # optional `NAME =` prefix, as in a genotypes.py assignment
        if self.peek()[0] == "name" and self.peek(1)[:2] == ("punct", "="):
            self.i += 2
        self.take("name", "Genotype")
        self.take("punct", "(")
        values: dict[str, object] = {}
        position = 0
        while not self.accept("punct", ")"):
            if self.peek()[0] == "name" and self.peek(1)[:2] == ("punct", "="):
                key = self.take("name")
                self.take("punct", "=")
                if key not in FIELDS:
                    raise ValueError(f"genotype: unknown field {key!r}")
            else:
                if position >= len(FIELDS):
                    raise ValueError("genotype: too many positional fields")
                key = FIELDS[position]
            position += 1
            if key in values:
                raise ValueError(f"genotype: field {key!r} given twice")
            values[key] = self.edges() if key in ("normal", "reduce") else self.concat()
            if not self.accept("punct", ","):
                self.take("punct", ")")
                break
        if self.peek()[0] != "eof":
            raise ValueError(f"genotype: trailing text at offset {self.peek()[2]}")
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise ValueError(f"genotype: missing field(s) {', '.join(missing)}")
        return Genotype(**values)

    def _seq(self, item):
        tok = self.peek()
        if tok[0] != "punct" or tok[1] not in ("[", "("):
            raise ValueError(f"genotype: expected a list at offset {tok[2]}")
        close = {"[": "]", "(": ")"}[self.take("punct")]
        items = []
        while not self.accept("punct", close):
            items.append(item())
            if not self.accept("punct", ","):
                self.take("punct", close)
                break
        return tuple(items)

    def edge(self) -> tuple[str, int]:
        self.take("punct", "(")
        op = self.take("str")
        self.take("punct", ",")
        src = int(self.take("int"))
        self.accept("punct", ",")
        self.take("punct", ")")
        return (op, src)

    def edges(self) -> tuple[tuple[str, int], ...]:
        return self._seq(self.edge)

    def concat(self) -> tuple[int, ...]:
        if self.accept("name", "range"):
            self.take("punct", "(")
            args = [int(self.take("int"))]
            while self.accept("punct", ","):
                if self.peek()[0] != "int":
                    break
                args.append(int(self.take("int")))
            self.take("punct", ")")
            if len(args) > 2:
                raise ValueError("genotype: range() with a step is not a concat")
            return tuple(range(*args))
        return self._seq(lambda: int(self.take("int")))


def parse_genotype(text: str) -> Genotype:
    """Parse one genotype string (see module doc); fields become tuples of ints / (op, src)."""
    return _Parser(text.strip()).genotype()


def format_genotype(g: Genotype) -> str:
    """Print in the reference code's layout, concats as lists (round-trips through the parser)."""
    def edges(es):
        return "[" + ", ".join(f"('{op}', {src})" for op, src in es) + "]"

    def cat(c):
        return "[" + ", ".join(str(i) for i in c) + "]"

    return (f"Genotype(normal={edges(g.normal)}, normal_concat={cat(g.normal_concat)}, "
            f"reduce={edges(g.reduce)}, reduce_concat={cat(g.reduce_concat)})")
