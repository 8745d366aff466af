"""The IR: a networkx DAG whose node payloads are typed frozen dataclasses.

Every node is stored under the single attribute `"node"` (never a bag of string keys); its
tensor inputs are the ordered `inputs` tuple of the payload and the graph's edges mirror them.
Passes change payloads with `dataclasses.replace` and return a new `IR`; the verifier
(`compiler.verify`) checks the invariants between passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

import networkx as nx

from dasc.errors import Span
from dasc.ops.registry import Shape


@dataclass(frozen=True)
class OpCall:
    """A built-in op with its resolved integer arguments, in the op's parameter order."""

    op: str
    args: tuple[tuple[str, int], ...] = ()

    def arg(self, name: str, default: int | None = None) -> int | None:
        for key, value in self.args:
            if key == name:
                return value
        return default

    def argdict(self) -> dict[str, int]:
        return dict(self.args)

    def __str__(self) -> str:
        if not self.args:
            return self.op
        return f"{self.op}({', '.join(f'{k}={v}' for k, v in self.args)})"


@dataclass(frozen=True)
class BlockNode:
    """One primitive op inside a candidate; input -1 is the candidate's input.

    `adapter` is the reason text when the compiler inserted this node as a channel adapter.
    """

    call: OpCall
    inputs: tuple[int, ...]
    shape: Shape | None = None
    adapter: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Candidate:
    """One option of a choice point: a small DAG of primitive ops; the last node is its output.

    A built-in op is a one-node block; a composite op is its expansion. `name` is the member
    as written in the op set, with its bound arguments (`sep_conv_3x3`, `mbconv(k=5, e=6)`),
    unique within the choice: it is what `arch.json` records. `op` is the bare op name
    (`mbconv`), which `constraint count OP` matches.
    """

    name: str
    nodes: tuple[BlockNode, ...]
    skip: bool = False
    zero: bool = False
    span: Span | None = field(default=None, compare=False)
    op: str = ""

    def __post_init__(self) -> None:
        if not self.op:
            object.__setattr__(self, "op", self.name.split("(", 1)[0])

    @property
    def shape(self) -> Shape | None:
        return self.nodes[-1].shape if self.nodes else None


@dataclass(frozen=True)
class InputNode:
    """The network's input tensor."""

    name: str
    inputs: tuple[str, ...] = ()
    shape: Shape | None = None
    scope: str = ""
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class OpNode:
    """A fixed (not searched) primitive op. `adapter` holds the reason if compiler-inserted.

    `group` names the composite op instance it came from, for drawing and fx node names.
    """

    call: OpCall
    inputs: tuple[str, ...]
    shape: Shape | None = None
    scope: str = ""
    group: str = ""
    adapter: str | None = None
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ChoiceNode:
    """A choice point: a mixture over candidates applied to one input.

    `alpha` is the key of its architecture parameters (equal keys share α); `region` is the
    decision region (cell instance or "network") it belongs to for counting and constraints.
    """

    candidates: tuple[Candidate, ...]
    inputs: tuple[str, ...]
    alpha: str
    region: str
    shape: Shape | None = None
    scope: str = ""
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CombineNode:
    """`sum` or `concat` of its inputs; `keep` is DARTS-style input selection (top-k inputs).

    `select` is the key of the selection decision (shared like `alpha`), set when `keep` is.
    """

    kind: str
    inputs: tuple[str, ...]
    keep: int | None = None
    select: str | None = None
    region: str = ""
    shape: Shape | None = None
    scope: str = ""
    span: Span | None = field(default=None, compare=False)
    group: str = ""


@dataclass(frozen=True)
class OutputNode:
    """The network's output (logits)."""

    inputs: tuple[str, ...]
    shape: Shape | None = None
    scope: str = ""
    span: Span | None = field(default=None, compare=False)


Node = Union[InputNode, OpNode, ChoiceNode, CombineNode, OutputNode]


@dataclass(frozen=True)
class Region:
    """A unit of decisions: a cell instance or the network body outside cells.

    Instances whose choices share α share a `key`; the first of them is the `representative`
    whose subgraph counting, constraints and discretization work on.
    """

    id: str
    cell: str | None
    key: str
    inputs: tuple[str, ...]
    output: str
    representative: bool
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PathRule:
    """Every path from the region's inputs to its output keeps >= `min_nonskip` non-skip ops."""

    cell: str | None
    min_nonskip: int
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CountRule:
    """At most `max_count` choices of the region pick `op`."""

    cell: str | None
    op: str
    max_count: int
    span: Span | None = field(default=None, compare=False)


Rule = Union[PathRule, CountRule]


@dataclass(frozen=True)
class SearchSetting:
    """A `search { key = value }` default, with its span for validation errors."""

    key: str
    value: int | float | str
    span: Span | None = field(default=None, compare=False)


@dataclass(eq=False)
class IR:
    """A compiled space: the graph plus what the passes need to know about it.

    `==` is structural (`ir_equal`): the same node ids, payloads, spans, edges and metadata,
    which is what `serialize.load(serialize.dump(ir)) == ir` promises.
    """

    name: str
    graph: nx.DiGraph
    params: tuple[tuple[str, int], ...]
    regions: tuple[Region, ...] = ()
    rules: tuple[Rule, ...] = ()
    search: tuple[SearchSetting, ...] = ()
    span: Span | None = None

    def node(self, node_id: str) -> Node:
        return self.graph.nodes[node_id]["node"]

    def nodes(self) -> Iterator[tuple[str, Node]]:
        """Nodes in a deterministic topological order (ties broken by insertion order)."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        for node_id in nx.lexicographical_topological_sort(self.graph, key=order.__getitem__):
            yield node_id, self.graph.nodes[node_id]["node"]

    def add(self, node_id: str, node: Node) -> None:
        if node_id in self.graph:
            raise ValueError(f"IR node {node_id!r} added twice")
        self.graph.add_node(node_id, node=node)
        for src in node.inputs:
            self.graph.add_edge(src, node_id)

    def replace(self, node_id: str, node: Node) -> None:
        """Swap a payload; edges are rewired to the new `inputs`."""
        for src in list(self.graph.predecessors(node_id)):
            self.graph.remove_edge(src, node_id)
        self.graph.nodes[node_id]["node"] = node
        for src in node.inputs:
            self.graph.add_edge(src, node_id)

    def copy(self) -> "IR":
        return IR(self.name, self.graph.copy(), self.params, self.regions, self.rules,
                  self.search, self.span)

    @property
    def input(self) -> str:
        return next(n for n, p in self.nodes() if isinstance(p, InputNode))

    @property
    def output(self) -> str:
        return next(n for n, p in self.nodes() if isinstance(p, OutputNode))

    def choices(self) -> list[tuple[str, ChoiceNode]]:
        return [(n, p) for n, p in self.nodes() if isinstance(p, ChoiceNode)]

    def param(self, name: str) -> int:
        return dict(self.params)[name]

    def region(self, region_id: str) -> Region:
        """The region with this id (`network` or a cell instance such as `darts3`)."""
        for r in self.regions:
            if r.id == region_id:
                return r
        raise KeyError(region_id)

    def region_nodes(self, region_id: str) -> list[tuple[str, Node]]:
        """The nodes a region owns, in topological order.

        A cell instance owns the nodes whose `scope` is its id; the network region owns those
        with an empty scope (stem, head, the input and output nodes, network-level choices).
        """
        scope = "" if region_id == "network" else region_id
        return [(n, p) for n, p in self.nodes() if p.scope == scope]

    def representatives(self) -> list[Region]:
        """One region per sharing key, in order: the units that counting works on."""
        return [r for r in self.regions if r.representative]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IR) and ir_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  # mutable container


def _spans(payload: object) -> list[Span | None]:
    """Every span inside a payload, including its candidates' (spans are compare=False)."""
    out = [getattr(payload, "span", None)]
    for cand in getattr(payload, "candidates", ()):
        out.append(cand.span)
    return out


def ir_equal(a: IR, b: IR) -> bool:
    """Structural equality: node ids, payloads (spans included), edges and IR metadata.

    Payload dataclasses leave spans out of `==` so that passes can compare nodes by meaning;
    here spans count too, because a reloaded IR must still point at the user's source.
    """
    if (a.name, a.params, a.span) != (b.name, b.params, b.span):
        return False
    for xs, ys in ((a.regions, b.regions), (a.rules, b.rules), (a.search, b.search)):
        if xs != ys or [x.span for x in xs] != [y.span for y in ys]:
            return False
    if set(a.graph.nodes) != set(b.graph.nodes) or set(a.graph.edges) != set(b.graph.edges):
        return False
    for node_id in a.graph.nodes:
        pa = a.graph.nodes[node_id].get("node")
        pb = b.graph.nodes[node_id].get("node")
        if pa != pb or _spans(pa) != _spans(pb):
            return False
    return True
