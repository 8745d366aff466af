"""Architecture strings people already have: DARTS genotypes and NAS-Bench-201 strings.

Both are parsed by hand (never `eval`). They map onto a space's α and select keys by the
naming the compiler gives choice points (docs/language-spec.md): a DARTS-shaped space has one
cell shared per stride whose nodes `n2..n5` sum `keep 2` of their inputs (input i of node j is
edge `n<j>.e<i>`; inputs 0 and 1 are the cell inputs); a NAS-Bench-201-shaped space has one
shared cell with choices `n1` and `n<j>.e<i>`. `spaces/darts.das` and `spaces/nb201.das` are.

Round trips: NB201 strings list edges in a fixed order, so string → arch → string is the
identity. A DARTS genotype lists a node's two edges in the order DARTS ranked them, which an
architecture does not record; the formatter writes them by input index, so the round trip is the
identity up to that order (`parse_genotype` results compare equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dasc.compiler.arch import Arch, check_arch_fits
from dasc.compiler.ir import IR, CombineNode
from dasc.errors import UsageError

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>-?\d+)|(?P<str>'[^']*'|\"[^\"]*\")"
                    r"|(?P<punct>[()\[\],=]))")


@dataclass(frozen=True)
class Genotype:
    """A DARTS genotype: (op, input) pairs, two per intermediate node, and the concat lists."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def canonical(self) -> "Genotype":
        """Each node's two edges sorted by input index (the order carries no meaning)."""
        def sort(pairs):
            out = []
            for k in range(0, len(pairs), 2):
                out.extend(sorted(pairs[k:k + 2], key=lambda p: (p[1], p[0])))
            return tuple(out)
        return Genotype(sort(self.normal), self.normal_concat, sort(self.reduce),
                        self.reduce_concat)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _bad(why: str) -> UsageError:
    return UsageError(f"not a DARTS genotype: {why}",
                      hint="write it as DARTS prints it: Genotype(normal=[('sep_conv_3x3', 0), "
                           "...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])")


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise _bad(f"expected {value or kind}, found {v or 'the end'}")
        self.i += 1
        return v

    def int_list(self) -> tuple[int, ...]:
        if self.peek()[1] == "range":  # DARTS prints concat as range(2, 6)
            self.take("range")
            self.take("(")
            lo = int(self.take(kind="int"))
            self.take(",")
            hi = int(self.take(kind="int"))
            self.take(")")
            return tuple(range(lo, hi))
        self.take("[")
        out = []
        while self.peek()[1] != "]":
            out.append(int(self.take(kind="int")))
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return tuple(out)

    def pairs(self) -> tuple[tuple[str, int], ...]:
        self.take("[")
        out = []
        while self.peek()[1] != "]":
            self.take("(")
            op = self.take(kind="str")[1:-1]
            self.take(",")
            out.append((op, int(self.take(kind="int"))))
            self.take(")")
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return tuple(out)


def parse_genotype(text: str) -> Genotype:
    """`Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`."""
    r = _Reader(text)
    r.take("Genotype")
    r.take("(")
    fields: dict[str, object] = {}
    while r.peek()[1] != ")":
        key = r.take(kind="name")
        r.take("=")
        fields[key] = r.pairs() if key in ("normal", "reduce") else r.int_list()
        if r.peek()[1] == ",":
            r.take(",")
    r.take(")")
    if r.peek()[0] != "eof":
        raise _bad(f"unexpected {r.peek()[1]!r} after the closing parenthesis")
    missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(fields)
    if missing:
        raise _bad(f"missing {', '.join(sorted(missing))}")
    return Genotype(fields["normal"], fields["normal_concat"], fields["reduce"],  # type: ignore[arg-type]
                    fields["reduce_concat"])  # type: ignore[arg-type]


def format_genotype(g: Genotype) -> str:
    def pairs(ps):
        return "[" + ", ".join(f"('{op}', {i})" for op, i in ps) + "]"

    def ints(xs):
        return "[" + ", ".join(str(x) for x in xs) + "]"
    return (f"Genotype(normal={pairs(g.normal)}, normal_concat={ints(g.normal_concat)}, "
            f"reduce={pairs(g.reduce)}, reduce_concat={ints(g.reduce_concat)})")


def _darts_cells(ir: IR) -> dict[int, tuple[str, list[tuple[str, int]]]]:
    """stride -> (key prefix, [(select key, number of inputs)...]) for a DARTS-shaped space."""
    cells: dict[int, tuple[str, list[tuple[str, int]]]] = {}
    for _, p in ir.nodes():
        if isinstance(p, CombineNode) and p.select:
            m = re.fullmatch(r"(.+\[stride=(\d)\])\.n(\d+)", p.select)
            if not m:
                continue
            prefix, stride = m.group(1), int(m.group(2))
            entry = cells.setdefault(stride, (prefix, []))
            if all(k != p.select for k, _ in entry[1]):
                entry[1].append((p.select, len(p.inputs)))
    if set(cells) != {1, 2}:
        raise UsageError(f"space '{ir.name}' does not have the DARTS shape (a cell shared per "
                         "stride with `keep` nodes n2, n3, ...)",
                         hint="DARTS genotypes fit spaces like spaces/darts.das")
    return cells


def genotype_to_arch(ir: IR, g: Genotype) -> Arch:
    cells = _darts_cells(ir)
    choices, keeps = [], []
    for stride, pairs, concat in ((1, g.normal, g.normal_concat), (2, g.reduce, g.reduce_concat)):
        prefix, nodes = cells[stride]
        if len(pairs) != 2 * len(nodes):
            raise UsageError(f"the genotype has {len(pairs)} edges per cell but space "
                             f"'{ir.name}' needs {2 * len(nodes)} ({len(nodes)} nodes, 2 each)",
                             hint="use a genotype searched in a space with as many nodes")
        expected = tuple(range(2, 2 + len(nodes)))
        if tuple(sorted(concat)) != expected:
            raise UsageError(f"the genotype concatenates nodes {list(concat)} but space "
                             f"'{ir.name}' concatenates {list(expected)}",
                             hint="dasc's DARTS space concatenates every intermediate node")
        for n, (select, n_inputs) in enumerate(sorted(nodes, key=lambda e: int(e[0].rsplit('n', 1)[1]))):
            edges = pairs[2 * n:2 * n + 2]
            inputs = [i for _, i in edges]
            if len(set(inputs)) != 2 or not all(0 <= i < n_inputs for i in inputs):
                raise UsageError(f"node {n + 2} of the genotype takes inputs {inputs}; it needs "
                                 f"two different inputs among 0..{n_inputs - 1}",
                                 hint="check the genotype's input indices")
            keeps.append((select, tuple(inputs)))
            choices.extend((f"{select}.e{i}", op) for op, i in edges)
    arch = Arch(tuple(choices), tuple(keeps))
    check_arch_fits(ir, arch)
    return arch


def arch_to_genotype(ir: IR, arch: Arch) -> Genotype:
    cells = _darts_cells(ir)
    chosen, kept = dict(arch.choices), dict(arch.keeps)
    parts = []
    for stride in (1, 2):
        prefix, nodes = cells[stride]
        pairs = []
        for select, _ in sorted(nodes, key=lambda e: int(e[0].rsplit('n', 1)[1])):
            pairs.extend((chosen[f"{select}.e{i}"], i) for i in kept[select])
        parts.append((tuple(pairs), tuple(range(2, 2 + len(nodes)))))
    return Genotype(parts[0][0], parts[0][1], parts[1][0], parts[1][1])


def _nb201_prefix(ir: IR) -> str:
    keys = {p.alpha for _, p in ir.choices()}
    prefixes = {k.rsplit(".n1", 1)[0] for k in keys if k.endswith(".n1")}
    for prefix in prefixes:
        need = {f"{prefix}.n1"} | {f"{prefix}.n{j}.e{i}" for j in (2, 3) for i in range(j)}
        if need == keys:
            return prefix
    raise UsageError(f"space '{ir.name}' does not have the NAS-Bench-201 shape (one shared cell "
                     "with choices n1, n2.e0, n2.e1, n3.e0, n3.e1, n3.e2)",
                     hint="NAS-Bench-201 strings fit spaces like spaces/nb201.das")


def _nb201_key(prefix: str, i: int, j: int) -> str:
    return f"{prefix}.n1" if j == 1 else f"{prefix}.n{j}.e{i}"


def parse_nb201(ir: IR, text: str) -> Arch:
    """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` → an Arch of an NB201-shaped space."""
    prefix = _nb201_prefix(ir)
    hint = "write it as NAS-Bench-201 does: |nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|"
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise UsageError(f"a NAS-Bench-201 string has 3 nodes separated by '+', found {len(nodes)}",
                         hint=hint)
    choices = []
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise UsageError(f"node {j} of the NAS-Bench-201 string must be enclosed in '|'", hint=hint)
        edges = node[1:-1].split("|")
        if len(edges) != j:
            raise UsageError(f"node {j} must list {j} edges, found {len(edges)}", hint=hint)
        for edge in edges:
            op, _, src = edge.partition("~")
            if not src.isdigit() or int(src) >= j:
                raise UsageError(f"edge '{edge}' of node {j} needs an input index below {j}", hint=hint)
            choices.append((_nb201_key(prefix, int(src), j), op))
    if len({k for k, _ in choices}) != 6:
        raise UsageError("the NAS-Bench-201 string repeats an edge", hint=hint)
    arch = Arch(tuple(choices), ())
    check_arch_fits(ir, arch)
    return arch


def format_nb201(ir: IR, arch: Arch) -> str:
    prefix = _nb201_prefix(ir)
    chosen = dict(arch.choices)
    return "+".join("|" + "|".join(f"{chosen[_nb201_key(prefix, i, j)]}~{i}" for i in range(j)) + "|"
                    for j in (1, 2, 3))


def _text_of(source: str) -> str:
    stripped = source.strip()
    if stripped.startswith(("Genotype", "|")):
        return stripped
    path = Path(source)
    try:
        if path.is_file() and path.stat().st_size < 1_000_000:
            return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        pass
    return stripped


def is_arch_string(source: str) -> bool:
    """A genotype or NB201 string, given literally or as a file holding one."""
    return _text_of(source).startswith(("Genotype", "|"))


def read_any(source: str, ir: IR) -> Arch:
    text = _text_of(source)
    if text.startswith("Genotype"):
        return genotype_to_arch(ir, parse_genotype(text))
    return parse_nb201(ir, text)


def format_arch(ir: IR, arch: Arch, fmt: str) -> str:
    """`darts` or `nb201` form of an architecture of a space of that shape."""
    if fmt == "darts":
        return format_genotype(arch_to_genotype(ir, arch))
    if fmt == "nb201":
        return format_nb201(ir, arch)
    raise UsageError(f"unknown architecture format '{fmt}'", hint="use json, darts or nb201")
