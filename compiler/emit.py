"""Where the interpreter's ops go: the IR graph, or the block of a choice candidate.

The same composite op body is expanded in two places: in the network (its ops become `OpNode`s
of the graph, tagged with a `group`) and inside a choice candidate (its ops become the
candidate's `BlockNode`s). The interpreter talks to a target through `op` and `combine`, so
it does not care which; only the graph target accepts choices and input selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dasc.compiler.ir import IR, BlockNode, Candidate, ChoiceNode, CombineNode, OpCall, OpNode
from dasc.compiler.scope import Frame
from dasc.compiler.values import Budget, Tensor
from dasc.errors import Span


@dataclass(frozen=True)
class Decision:
    """What instances sharing α must agree on: one choice's candidates or one selection."""

    local: str
    kind: str  # "choice" | "keep"
    detail: tuple

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice `{self.local}` over [{', '.join(self.detail)}]"
        keep, n = self.detail
        return f"`{self.local}` keeping {keep} of {n} inputs"


def local_id(node_id: str, scope: str) -> str:
    """A node id without its cell instance prefix: `darts3.n2.e0` -> `n2.e0`."""
    return node_id[len(scope) + 1:] if scope and node_id.startswith(scope + ".") else node_id


@dataclass
class GraphTarget:
    """Builds the IR graph; records each region's decisions for the α-sharing check."""

    ir: IR
    budget: Budget
    decisions: dict[str, list[Decision]] = field(default_factory=dict)

    def _add(self, node_id: str, node, span: Span | None) -> Tensor:
        self.budget.node(span)
        self.ir.add(node_id, node)
        return Tensor(node_id)

    def op(self, node_id: str, call: OpCall, inputs: tuple[Tensor, ...], span: Span,
           frame: Frame) -> Tensor:
        node = OpNode(call, tuple(str(t.ref) for t in inputs), scope=frame.scope,
                      group=frame.group, span=span)
        return self._add(node_id, node, span)

    def combine(self, node_id: str, kind: str, inputs: tuple[Tensor, ...], keep: int | None,
                span: Span, frame: Frame) -> Tensor:
        select = region = None
        if frame.region is not None:
            region = frame.region.id
            if keep is not None:
                local = local_id(node_id, frame.scope)
                select = frame.region.alpha(local)
                self._record(region, Decision(local, "keep", (keep, len(inputs))))
        node = CombineNode(kind, tuple(str(t.ref) for t in inputs), keep=keep, select=select,
                           region=region or "", scope=frame.scope, span=span,
                           group=frame.group)
        return self._add(node_id, node, span)

    def choice(self, node_id: str, candidates: tuple[Candidate, ...], x: Tensor, span: Span,
               frame: Frame) -> Tensor:
        assert frame.region is not None, "choices are only expanded in cells and the network"
        local = local_id(node_id, frame.scope)
        self._record(frame.region.id,
                     Decision(local, "choice", tuple(c.name for c in candidates)))
        node = ChoiceNode(candidates, (str(x.ref),), alpha=frame.region.alpha(local),
                          region=frame.region.id, scope=frame.scope, span=span)
        return self._add(node_id, node, span)

    def _record(self, region: str, decision: Decision) -> None:
        self.decisions.setdefault(region, []).append(decision)


@dataclass
class BlockTarget:
    """Builds the block of one choice candidate; tensor refs are indices, -1 the input."""

    budget: Budget
    nodes: list[BlockNode] = field(default_factory=list)

    def op(self, label: str, call: OpCall, inputs: tuple[Tensor, ...], span: Span,
           frame: Frame) -> Tensor:
        self.budget.block_node(span)
        self.nodes.append(BlockNode(call, tuple(int(t.ref) for t in inputs), label=label))
        return Tensor(len(self.nodes) - 1)

    def combine(self, label: str, kind: str, inputs: tuple[Tensor, ...], keep: int | None,
                span: Span, frame: Frame) -> Tensor:
        assert keep is None, "input selection is rejected before reaching a candidate"
        return self.op(label, OpCall(kind), inputs, span, frame)

    def finish(self, out: int) -> tuple[BlockNode, ...]:
        """The nodes `out` depends on, renumbered, `out` last (dead ops of the body dropped)."""
        live: set[int] = set()
        todo = [out]
        while todo:
            i = todo.pop()
            if i >= 0 and i not in live:
                live.add(i)
                todo.extend(self.nodes[i].inputs)
        order = sorted(live)
        index = {old: new for new, old in enumerate(order)}
        index[-1] = -1
        return tuple(BlockNode(n.call, tuple(index[i] for i in n.inputs), n.shape, n.adapter,
                               n.label)
                     for n in (self.nodes[i] for i in order))
