"""Shape inference: the [C, H, W] of every node and of every op inside every candidate.

Each op's shape rule lives in the registry; a rule's complaint (`OpShapeIssue`) becomes a
`ShapeError` at the span of the user's expression. Two places need more than one rule:

* a choice: its candidates may disagree on channels (the adapter pass reconciles them, so the
  choice's shape is already the widest candidate's) but not on height and width;
* a `sum`: likewise, its inputs may differ in channels only.

A zero candidate (`none`) outputs nothing but zeros, so it takes the choice's common shape
rather than forcing an adapter onto a tensor that is always 0.
"""

from __future__ import annotations

from dataclasses import replace

import dasc.ops  # noqa: F401  (registers the built-in ops)
from dasc.compiler.ir import (
    IR, BlockNode, Candidate, ChoiceNode, CombineNode, InputNode, Node, OpCall, OpNode,
    OutputNode,
)
from dasc.errors import ShapeError, Span
from dasc.ops.registry import REGISTRY, OpShapeIssue, Shape


def infer_shapes(ir: IR) -> IR:
    """A copy of `ir` with every node's and every candidate op's `shape` set."""
    out = ir.copy()
    shapes: dict[str, Shape] = {}
    memo: dict = {}  # candidates repeat across choices (every DARTS edge has the same eight)
    for node_id, node in list(out.nodes()):
        ins = tuple(shapes[i] for i in node.inputs)
        new = _infer(node_id, node, ins, memo)
        shapes[node_id] = new.shape
        out.graph.nodes[node_id]["node"] = new
    return out


def _infer(node_id: str, node: Node, ins: tuple[Shape, ...], memo: dict) -> Node:
    if isinstance(node, InputNode):
        if node.shape is None:
            raise ShapeError(f"the input `{node.name}` has no shape", node.span)
        return node
    if isinstance(node, OpNode):
        return replace(node, shape=op_shape(node.call, ins, node.span))
    if isinstance(node, ChoiceNode):
        return _choice(node, ins[0], memo)
    if isinstance(node, CombineNode):
        return replace(node, shape=combine_shape(node, ins))
    if isinstance(node, OutputNode):
        return replace(node, shape=ins[0])
    raise TypeError(f"unknown IR node {node_id!r}: {node!r}")  # pragma: no cover


def op_shape(call: OpCall, ins: tuple[Shape, ...], span: Span | None,
             context: str = "") -> Shape:
    """The registry's shape rule for one op; its complaint becomes a located ShapeError."""
    spec = REGISTRY.get(call.op)
    if spec is None:
        raise ShapeError(f"{context}unknown op `{call.op}`", span)
    try:
        return spec.shape(ins, call.argdict())
    except OpShapeIssue as issue:
        raise ShapeError(context + issue.message, span, issue.hint) from None


def _listing(names: list[str], shapes: list[Shape]) -> str:
    return ", ".join(f"`{n}` gives {s}" for n, s in zip(names, shapes))


def _choice(node: ChoiceNode, x: Shape, memo: dict) -> ChoiceNode:
    cands = []
    for c in node.candidates:
        key = (c, c.span, x, node.span)
        if key not in memo:
            memo[key] = _candidate(c, x, node.span)
        cands.append(memo[key])
    outs = [c.shape for c in cands]
    if len({(s.h, s.w) for s in outs}) > 1:
        raise ShapeError(
            "the candidates of this choice disagree on height and width: "
            + _listing([c.name for c in cands], outs), node.span,
            "give every candidate the same stride (pass stride=... to the choice so that "
            "every op gets it); only channel differences are bridged by adapters")
    widths = [s.c for c, s in zip(cands, outs) if not c.zero] or [s.c for s in outs]
    common = Shape(max(widths), outs[0].h, outs[0].w)
    cands = [_as_zeros(c, common) if c.zero else c for c in cands]
    return replace(node, candidates=tuple(cands), shape=common)


def _candidate(c: Candidate, x: Shape, span: Span | None) -> Candidate:
    shapes: list[Shape] = []
    nodes: list[BlockNode] = []
    for b in c.nodes:
        ins = tuple(x if i == -1 else shapes[i] for i in b.inputs)
        if b.call.op in ("sum", "concat"):
            s = _combine(b.call.op, [b.label or "input"] * len(ins), list(ins), span,
                         f"candidate `{c.name}`: ")
        else:
            s = op_shape(b.call, ins, span, f"candidate `{c.name}`: ")
        shapes.append(s)
        nodes.append(replace(b, shape=s))
    return replace(c, nodes=tuple(nodes))


def _as_zeros(c: Candidate, common: Shape) -> Candidate:
    last = replace(c.nodes[-1], shape=common)
    return replace(c, nodes=c.nodes[:-1] + (last,))


def combine_shape(node: CombineNode, ins: tuple[Shape, ...]) -> Shape:
    return _combine(node.kind, list(node.inputs), list(ins), node.span, "")


def _combine(kind: str, names: list[str], ins: list[Shape], span: Span | None,
             context: str) -> Shape:
    """`sum`: equal height and width, channels may differ (adapters come next); `concat`:
    equal height and width, channels add up."""
    if len({(s.h, s.w) for s in ins}) > 1:
        if kind == "sum":
            hint = ("use stride=2 on the other inputs too, or reduce the larger inputs before "
                    "summing (e.g. fact_reduce); only channel differences get adapters")
        else:
            hint = "concat joins channels; reduce the larger inputs with a stride-2 op first"
        raise ShapeError(f"{context}`{kind}` of tensors with different heights and widths: "
                         + _listing(names, ins), span, hint)
    if kind == "concat":
        return Shape(sum(s.c for s in ins), ins[0].h, ins[0].w)
    return Shape(max(s.c for s in ins), ins[0].h, ins[0].w)
