"""Channel adapters: a learnable 1x1 conv (+BN) wherever tensors to be mixed differ in width.

Two places mix tensors: the candidates of a choice (their outputs are weighted and summed by
the supernet) and the inputs of a `sum`. Where they disagree on channels, each narrower one is
projected to the widest: a candidate gets a trailing `adapter(c=max)` block op, a sum input gets
an `adapter` node `<sum>.in<k>.adapter` in front of the sum. Every adapter records why it is
there (`adapter` field), for `compile` to report and `render` to draw, and carries the span of
the user's choice or sum so that any later error points at user code.

Shapes must be inferred first (`compiler.shapes`); afterwards every choice's candidates and
every sum's inputs have one common shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dasc.compiler.ir import IR, BlockNode, Candidate, ChoiceNode, CombineNode, OpCall, OpNode
from dasc.ops.registry import Shape


@dataclass(frozen=True)
class AdapterInfo:
    """One inserted adapter: the node it belongs to, the candidate (if any), and why."""

    node: str
    candidate: str | None
    reason: str
    cin: int
    cout: int


def insert_adapters(ir: IR) -> IR:
    """A copy of `ir` with adapters inserted; `ir` must have shapes."""
    out = ir.copy()
    memo: dict = {}
    for node_id, node in list(out.nodes()):
        if isinstance(node, ChoiceNode):
            x = out.node(node.inputs[0]).shape
            cands = []
            for c in node.candidates:
                key = (c, c.span, x, node.shape.c)
                if key not in memo:
                    memo[key] = _adapt_candidate(c, x, node.shape.c)
                cands.append(memo[key])
            cands = tuple(cands)
            if cands != node.candidates:
                out.graph.nodes[node_id]["node"] = replace(node, candidates=cands)
        elif isinstance(node, CombineNode) and node.kind == "sum":
            _adapt_sum(out, node_id, node)
    return out


def _reason(what: str, c: int, widest: int) -> str:
    return f"{what} gives {c} channels, largest is {widest}"


def _adapter_call(c: int) -> OpCall:
    return OpCall("adapter", (("c", c),))


def _adapt_candidate(cand: Candidate, x: Shape, widest: int) -> Candidate:
    nodes = _adapt_block_sums(cand, x)
    last = nodes[-1].shape
    if not cand.zero and last.c < widest:
        nodes.append(BlockNode(_adapter_call(widest), (len(nodes) - 1,),
                               Shape(widest, last.h, last.w),
                               adapter=_reason(f"candidate {cand.name}", last.c, widest),
                               label="adapter"))
    nodes_t = tuple(nodes)
    return cand if nodes_t == cand.nodes else replace(cand, nodes=nodes_t)


def _adapt_block_sums(cand: Candidate, x: Shape) -> list[BlockNode]:
    """Adapters in front of the narrower inputs of `sum`s inside a composite candidate."""
    out: list[BlockNode] = []
    index = {-1: -1}
    for i, b in enumerate(cand.nodes):
        ins = tuple(index[j] for j in b.inputs)
        if b.call.op == "sum":
            widest = b.shape.c
            fixed = []
            for k, j in enumerate(ins):
                s = out[j].shape if j >= 0 else x
                if s.c < widest:
                    out.append(BlockNode(_adapter_call(widest), (j,), replace(s, c=widest),
                                         adapter=_reason(f"input {k} of {b.label or 'sum'} "
                                                         f"in {cand.name}", s.c, widest),
                                         label=f"{b.label or 'sum'}.in{k}.adapter"))
                    j = len(out) - 1
                fixed.append(j)
            ins = tuple(fixed)
        out.append(replace(b, inputs=ins))
        index[i] = len(out) - 1
    return out


def _adapt_sum(ir: IR, node_id: str, node: CombineNode) -> None:
    widest = node.shape.c
    inputs = list(node.inputs)
    for k, src in enumerate(node.inputs):
        s = ir.node(src).shape
        if s.c >= widest:
            continue
        aid = _fresh(ir, f"{node_id}.in{k}.adapter")
        ir.add(aid, OpNode(_adapter_call(widest), (src,), replace(s, c=widest),
                           scope=node.scope, group=node.group,
                           adapter=_reason(f"input {k} ({src})", s.c, widest),
                           span=node.span))
        inputs[k] = aid
    if inputs != list(node.inputs):
        ir.replace(node_id, replace(node, inputs=tuple(inputs)))


def _fresh(ir: IR, name: str) -> str:
    if name not in ir.graph:
        return name
    i = 1
    while f"{name}_{i}" in ir.graph:
        i += 1
    return f"{name}_{i}"


def adapters(ir: IR) -> list[AdapterInfo]:
    """Every adapter the pass inserted, in topological order (what `compile` reports)."""
    out: list[AdapterInfo] = []
    for node_id, node in ir.nodes():
        if isinstance(node, OpNode) and node.adapter:
            src = ir.node(node.inputs[0]).shape
            out.append(AdapterInfo(node_id, None, node.adapter, src.c if src else 0,
                                   node.call.arg("c") or 0))
        elif isinstance(node, ChoiceNode):
            for cand in node.candidates:
                for i, b in enumerate(cand.nodes):
                    if b.adapter:
                        cin = (cand.nodes[b.inputs[0]].shape.c if b.inputs[0] >= 0
                               else ir.node(node.inputs[0]).shape.c)
                        out.append(AdapterInfo(node_id, cand.name, b.adapter, cin,
                                               b.call.arg("c") or 0))
    return out
