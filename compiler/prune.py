"""Pruning: the derived network of one architecture, as an IR with no choices left.

What the derived network is (the conventions `arch_cost`, `render --arch`, `train` and
`export` all rely on):

* every decided choice becomes its chosen candidate's ops, as OpNodes `<choice id>.<op>`
  (`<choice id>.<label>` for the ops of a composite candidate; `group` is the choice id);
* a `keep` sum keeps only the chosen inputs and becomes a plain sum; the dropped edges, their
  choices and any adapter on them disappear (they are dead);
* a plain sum drops inputs whose op is `none` (seen through adapters), unless all of them
  are, in which case it keeps the first: a zero tensor still has a shape, and the ops after it
  still exist, as in NAS-Bench-201's networks, whose parameter counts include them;
* anything else fed by a `none` keeps it (a concat cannot drop a part);
* shapes stay those of the super-network, so an adapter stays exactly where its candidate or
  edge stays: a chosen narrower candidate is still projected to the choice's width;
* nodes that no longer reach the output are removed, and so are the rules (a derived network
  has no decisions left to constrain).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import networkx as nx

from dasc.compiler.arch import Structure, structure
from dasc.compiler.ir import IR, ChoiceNode, CombineNode, InputNode, OpNode, Region


def derived_inputs(st: Structure, chosen: dict[str, Any], kept: dict[str, tuple[int, ...]]
                   ) -> dict[str, tuple[str, ...]]:
    """The inputs each original node still reads in the derived network."""
    zero: set[str] = set()
    out: dict[str, tuple[str, ...]] = {}
    for n, p in st.order:
        ins = tuple(p.inputs)
        if isinstance(p, ChoiceNode):
            cand = chosen.get(n)
            ins = () if cand is None else ins
            if cand is not None and cand.zero:
                zero.add(n)
        elif isinstance(p, OpNode) and p.adapter and ins and ins[0] in zero:
            zero.add(n)
        elif isinstance(p, CombineNode) and p.keep is not None:
            ins = tuple(ins[i] for i in kept[n])
        elif isinstance(p, CombineNode) and p.kind == "sum":
            nonzero = tuple(x for x in ins if x not in zero)
            ins = nonzero or ins[:1]
            if not nonzero:
                zero.add(n)
        out[n] = ins
    return out


def alive(st: Structure, inputs: dict[str, tuple[str, ...]], output: str) -> set[str]:
    """Nodes that reach `output` in the derived network, plus the network input."""
    live: set[str] = set()
    stack = [output]
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(inputs[n])
    live |= {n for n, p in st.order if isinstance(p, InputNode)}
    return live


def block_ids(choice_id: str, cand: Any) -> list[str]:
    """Ids of a candidate's ops in the derived network: `<choice id>.<label or op>`."""
    names = [b.label or b.call.op for b in cand.nodes]
    out = []
    for i, name in enumerate(names):
        out.append(f"{choice_id}.{name}" if names.count(name) == 1 else f"{choice_id}.{name}_{i}")
    return out


def prune(ir: IR, arch: Any) -> IR:
    """The derived network of `arch` (see the module doc); `ir` is left unchanged."""
    st = structure(ir)
    chosen, kept = st.view(ir, arch)
    inputs = derived_inputs(st, chosen, kept)
    live = alive(st, inputs, ir.output)
    out = IR(ir.name, nx.DiGraph(), ir.params, (), (), ir.search, ir.span)
    alias: dict[str, str] = {}
    for n, p in st.order:
        if n not in live:
            continue
        ins = tuple(alias.get(x, x) for x in inputs[n])
        if isinstance(p, ChoiceNode):
            cand = chosen[n]
            ids = block_ids(n, cand)
            for i, b in enumerate(cand.nodes):
                out.add(ids[i], OpNode(b.call, tuple(ins[0] if j < 0 else ids[j]
                                                     for j in b.inputs),
                                       b.shape, p.scope, n, b.adapter, cand.span or p.span))
            alias[n] = ids[-1]
        elif isinstance(p, CombineNode):
            out.add(n, replace(p, inputs=ins, keep=None, select=None))
        else:
            out.add(n, replace(p, inputs=ins))
    out.regions = _regions(ir, st, live, alias)
    return out


def _regions(ir: IR, st: Structure, live: set[str], alias: dict[str, str]
             ) -> tuple[Region, ...]:
    """Regions whose output survives, the first survivor of each key its representative."""
    out, seen = [], set()
    for r in st.regions:
        if r.output not in live:
            continue
        out.append(replace(r, output=alias.get(r.output, r.output),
                           inputs=tuple(alias.get(x, x) for x in r.inputs),
                           representative=r.key not in seen))
        seen.add(r.key)
    return tuple(out)


def is_derived(ir: IR) -> bool:
    """True when no choice and no input selection is left."""
    return not any(isinstance(p, ChoiceNode) or (isinstance(p, CombineNode) and p.keep)
                   for _, p in ir.nodes())

