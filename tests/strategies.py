"""Hypothesis strategies for random small search spaces, as `.das` TEXT plus their structure.

Other test files reuse these (`sys.path.insert(0, <repo root>)`, then
`from tests.strategies import cell_spaces, chain_spaces`):

* `cell_spaces()` draws DARTS-like spaces: a stem, an optional network-level choice, a few
  chained instances of one cell (shared or independent) whose nodes sum choices and fixed edges,
  optionally with `keep k`, and random `paths`/`count` constraints. The drawn `CellSpace`
  keeps the structure (`nodes`, `n_cells`, ...) so a test can brute-force the count itself.
* `chain_spaces()` draws chains of layers, each a choice over candidates of random widths or a
  sum of two branches of random widths; `ChainSpace.expected_adapters()` says, from the
  structure alone, where the adapter pass must insert adapters.

Every drawn text compiles (tests of the compiler rely on that); widths and strides are chosen
so that shapes always agree spatially.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

OPS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")
SKIP_OPS = frozenset({"skip_connect"})
ZERO_OPS = frozenset({"none"})

# ---------------------------------------------------------------------- cell spaces


@dataclass(frozen=True)
class Edge:
    """An input of a cell node: from state `src` (0..n_in-1 the cell inputs, then the nodes);
    `ops` is the op set of a choice on the edge, None a fixed `relu` edge."""

    src: int
    ops: tuple[str, ...] | None


@dataclass(frozen=True)
class CellNode:
    """A cell node: the sum of its edges, keeping `keep` of them when set."""

    edges: tuple[Edge, ...]
    keep: int | None = None


@dataclass(frozen=True)
class CellSpace:
    """A drawn space: its text and the structure the text encodes.

    IR layout: cell instances `c0..c{n_cells-1}`; node j of instance i is `c{i}.n{j}` and the
    choice on its k-th edge is `c{i}.n{j}.e{k}` with α key `c[].n{j}.e{k}` (shared) or
    `c[c{i}].n{j}.e{k}` (independent); the network-level choice is `x` (α `network.x`).
    """

    text: str
    n_in: int
    nodes: tuple[CellNode, ...]
    n_cells: int
    shared: bool
    net_ops: tuple[str, ...] | None
    rules: tuple[str, ...]  # constraint lines as written in the text


def _opset(ops: tuple[str, ...]) -> str:
    return "{" + ", ".join(ops) + "}"


def render_cell_space(n_in: int, nodes: tuple[CellNode, ...], n_cells: int, shared: bool,
                      net_ops: tuple[str, ...] | None, rules: tuple[str, ...]) -> str:
    """The `.das` text of a cell space (exposed so tests can write one by hand)."""
    tensors = ", ".join(f"s{i}" for i in range(n_in))
    lines = ["space random", "param C = 4", "input image [4, 8, 8]", "",
             f"cell c({tensors}) {'shared' if shared else 'independent'} {{"]
    lines += [f"  p{i} = relu(s{i})" for i in range(n_in)]
    states = [f"p{i}" for i in range(n_in)]
    for j, node in enumerate(nodes):
        terms = [f"choice({_opset(e.ops)}, {states[e.src]})" if e.ops else
                 f"relu({states[e.src]})" for e in node.edges]
        keep = f" keep {node.keep}" if node.keep else ""
        lines.append(f"  n{j} = sum({', '.join(terms)}){keep}")
        states.append(f"n{j}")
    lines += [f"  return sum({', '.join(f'n{j}' for j in range(len(nodes)))})", "}", "",
              "network {", "  x = relu(image)"]
    if net_ops:
        lines.append(f"  x = choice({_opset(net_ops)}, x)")
    prev = ["x"] * n_in
    for i in range(n_cells):
        lines.append(f"  y{i} = c({', '.join(prev)})")
        prev = prev[1:] + [f"y{i}"]
    lines += [f"  return relu({prev[-1]})", "}", ""]
    lines += list(rules)
    return "\n".join(lines) + "\n"


op_sets = st.lists(st.sampled_from(OPS), min_size=1, max_size=3, unique=True).map(tuple)


@st.composite
def cell_nodes(draw, n_in: int, max_nodes: int = 3, max_edges: int = 3
               ) -> tuple[CellNode, ...]:
    nodes = []
    for j in range(draw(st.integers(1, max_nodes))):
        n_edges = draw(st.integers(1, max_edges))
        edges = tuple(Edge(draw(st.integers(0, n_in + j - 1)),
                           draw(st.one_of(st.none(), op_sets, op_sets)))
                      for _ in range(n_edges))
        nodes.append(CellNode(edges, draw(st.one_of(st.none(), st.integers(1, n_edges)))))
    # Every cell input feeds some edge: an unused input would leave the previous cell dead,
    # and the compiler drops dead nodes (their choices would change nothing).
    used = {e.src for n in nodes for e in n.edges}
    extra = tuple(Edge(i, None) for i in range(n_in) if i not in used)
    if extra:
        last = nodes[-1]
        nodes[-1] = CellNode(last.edges + extra, last.keep)
    return tuple(nodes)


@st.composite
def cell_spaces(draw, max_cells: int = 3, max_nodes: int = 3, rules: bool = True
                ) -> CellSpace:
    """A random small cell space (see `CellSpace` for the layout of its IR)."""
    n_in = draw(st.integers(1, 2))
    nodes = draw(cell_nodes(n_in, max_nodes))
    n_cells = draw(st.integers(1, max_cells))
    shared = draw(st.booleans())
    net_ops = draw(st.one_of(st.none(), op_sets))
    cell_ops = sorted({o for n in nodes for e in n.edges for o in (e.ops or ())})
    all_ops = sorted(set(cell_ops) | set(net_ops or ()))
    lines = []
    for _ in range(draw(st.integers(0, 2)) if rules else 0):
        scope = draw(st.sampled_from(["", " in c"])) if cell_ops else ""
        if draw(st.booleans()) or not all_ops:
            lines.append(f"constraint paths{scope} >= {draw(st.integers(0, 3))}")
        else:
            pool = cell_ops if scope else all_ops
            lines.append(f"constraint count {draw(st.sampled_from(pool))}{scope} <= "
                         f"{draw(st.integers(0, 3))}")
    text = render_cell_space(n_in, nodes, n_cells, shared, net_ops, tuple(lines))
    return CellSpace(text, n_in, nodes, n_cells, shared, net_ops, tuple(lines))


# ---------------------------------------------------------------------- chains


@dataclass(frozen=True)
class Layer:
    """One layer of a chain: a choice over `widths` (None: a width-keeping op such as
    `skip_connect`/`none`/a pool), or (`is_sum`) the sum of two convs of widths `widths`."""

    widths: tuple[int | None, ...]
    is_sum: bool = False
    zero_first: bool = False  # the choice's first candidate is `none`


@dataclass(frozen=True)
class ChainSpace:
    """A chain `image -> layer0 -> layer1 -> ...`; layer i's node is `x<i>` (`x0` is `x`)."""

    text: str
    c_in: int
    layers: tuple[Layer, ...]

    def node_ids(self) -> list[str]:
        return ["x" if i == 0 else f"x_{i}" for i in range(len(self.layers))]

    def expected_adapters(self) -> set[tuple[str, str | None]]:
        """(node id, candidate name) of each adapter, candidate None for sum inputs
        (`<sum>.in<k>.adapter`)."""
        out: set[tuple[str, str | None]] = set()
        width = self.c_in
        for node_id, layer in zip(self.node_ids(), self.layers):
            names = _candidate_names(layer)
            real = [w or width for w in layer.widths]
            zero = [layer.zero_first and k == 0 for k in range(len(real))]
            widest = max(w for w, z in zip(real, zero) if not z) if not all(zero) else width
            for k, (w, z) in enumerate(zip(real, zero)):
                if w < widest and not z:
                    out.add((f"{node_id}.in{k}.adapter", None) if layer.is_sum
                            else (node_id, names[k]))
            width = widest
        return out


def _candidate_names(layer: Layer) -> list[str]:
    names = []
    for k, w in enumerate(layer.widths):
        if layer.zero_first and k == 0:
            names.append("none")
        elif w is None:
            names.append(("skip_connect", "max_pool_3x3", "avg_pool_3x3", "identity")[k])
        else:
            names.append(f"conv(c={w}, k={2 * k + 1})")
    return names


def render_chain(c_in: int, layers: tuple[Layer, ...]) -> str:
    lines = ["space chain", f"input image [{c_in}, 6, 6]", "", "network {", "  x = image"]
    for layer in layers:
        if layer.is_sum:
            a, b = layer.widths
            lines.append(f"  x = sum(conv(x, {a}), conv(x, {b}, k=1))")
        else:
            lines.append(f"  x = choice({{{', '.join(_candidate_names(layer))}}}, x)")
    lines += ["  return relu(x)", "}", ""]
    return "\n".join(lines)


widths = st.integers(1, 12)


@st.composite
def layers(draw) -> Layer:
    if draw(st.integers(0, 3)) == 0:
        return Layer((draw(widths), draw(widths)), is_sum=True)
    n = draw(st.integers(1, 4))
    ws = tuple(draw(st.one_of(st.none(), widths)) for _ in range(n))
    zero_first = n > 1 and draw(st.booleans())
    if zero_first and ws[0] is not None:
        ws = (None,) + ws[1:]
    return Layer(ws, zero_first=zero_first)


@st.composite
def chain_spaces(draw, max_layers: int = 5) -> ChainSpace:
    """A random chain of choices and sums whose widths differ at random."""
    c_in = draw(widths)
    ls = tuple(draw(st.lists(layers(), min_size=1, max_size=max_layers)))
    return ChainSpace(render_chain(c_in, ls), c_in, ls)
