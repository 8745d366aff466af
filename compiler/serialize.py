"""The IR as JSON (`dasc compile -o ir.json`): `dump(ir) -> dict`, `load(d) -> IR`.

The format is documented in docs/ir-json.md. Every payload dataclass is written field by
field under a `type` tag, so the file is readable and `load(dump(ir)) == ir` holds exactly
(spans included: an IR read back still points at the user's source). A file of another
format version, or one that is not a dasc IR at all, is a `UsageError`, never a crash.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import networkx as nx

from dasc.compiler.ir import (
    IR, BlockNode, Candidate, ChoiceNode, CombineNode, CountRule, InputNode, OpCall, OpNode,
    OutputNode, PathRule, Region, SearchSetting,
)
from dasc.errors import Span, UsageError
from dasc.ops.registry import Shape

FORMAT = "dasc-ir"
VERSION = 1

_NODE_KINDS: dict[str, type] = {"input": InputNode, "op": OpNode, "choice": ChoiceNode,
                                "combine": CombineNode, "output": OutputNode}
_RULE_KINDS: dict[str, type] = {"paths": PathRule, "count": CountRule}
_KIND_OF = {cls: kind for kind, cls in {**_NODE_KINDS, **_RULE_KINDS}.items()}

# ---------------------------------------------------------------------- encoding


def _enc(value: Any) -> Any:
    """A JSON value for one field value of a payload."""
    if isinstance(value, Span):
        return [value.file, value.line, value.col, value.end_line, value.end_col]
    if isinstance(value, Shape):
        return [value.c, value.h, value.w]
    if isinstance(value, OpCall):
        return {"op": value.op, "args": {k: v for k, v in value.args}}
    if dataclasses.is_dataclass(value):
        return {f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_enc(v) for v in value]
    return value


def _tagged(value: Any) -> dict:
    return {"type": _KIND_OF[type(value)], **_enc(value)}


def dump(ir: IR) -> dict:
    """The IR as a JSON-ready dict; nodes in topological order, so a reader can stream it."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": ir.name,
        "span": _enc(ir.span),
        "params": {k: v for k, v in ir.params},
        "nodes": [{"id": n, **_tagged(p)} for n, p in ir.nodes()],
        "regions": [_enc(r) for r in ir.regions],
        "rules": [_tagged(r) for r in ir.rules],
        "search": [_enc(s) for s in ir.search],
    }

# ---------------------------------------------------------------------- decoding


def _span(v: Any) -> Span | None:
    if v is None:
        return None
    file, line, col, end_line, end_col = v
    return Span(str(file), int(line), int(col), int(end_line), int(end_col))


def _shape(v: Any) -> Shape | None:
    return None if v is None else Shape(*(int(x) for x in v))


def _call(v: dict) -> OpCall:
    return OpCall(str(v["op"]), tuple((str(k), int(x)) for k, x in v["args"].items()))


def _block(v: dict) -> BlockNode:
    return _build(BlockNode, v)


def _candidate(v: dict) -> Candidate:
    return _build(Candidate, v)


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "span": _span,
    "shape": _shape,
    "call": _call,
    "nodes": lambda v: tuple(_block(b) for b in v),
    "candidates": lambda v: tuple(_candidate(c) for c in v),
    "inputs": tuple,
}


def _build(cls: type, v: dict) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in v:
            raw = v[f.name]
            kwargs[f.name] = _FIELDS.get(f.name, lambda x: x)(raw)
    return cls(**kwargs)


def load(d: dict) -> IR:
    """The IR written by `dump`; UsageError if `d` is not a dasc IR of this version."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise UsageError("this file is not a dasc IR (no `\"format\": \"dasc-ir\"`)", None)
    if d.get("version") != VERSION:
        raise UsageError(f"dasc IR format version {d.get('version')!r} is not supported",
                         None, f"this dasc reads version {VERSION}; recompile the space")
    try:
        graph = nx.DiGraph()
        for entry in d["nodes"]:
            cls = _NODE_KINDS[entry["type"]]
            graph.add_node(str(entry["id"]), node=_build(cls, entry))
        for node_id, data in list(graph.nodes(data=True)):
            for src in data["node"].inputs:
                if src not in graph:
                    raise ValueError(f"node {node_id!r} reads the missing node {src!r}")
                graph.add_edge(src, node_id)
        return IR(
            name=str(d["name"]),
            graph=graph,
            params=tuple((str(k), int(v)) for k, v in d["params"].items()),
            regions=tuple(_build(Region, r) for r in d["regions"]),
            rules=tuple(_build(_RULE_KINDS[r["type"]], r) for r in d["rules"]),
            search=tuple(_build(SearchSetting, s) for s in d["search"]),
            span=_span(d.get("span")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"this dasc IR file is corrupt: {exc!r}", None) from None
