"""IR -> Graphviz DOT text: what `dasc render` draws.

Three views of one compiled space, because they answer different questions:

* the space itself (no `arch`, no `alpha`): every choice point is one node listing its
  candidate set, so a reviewer can check what the search may pick where;
* a search run (`alpha`): every candidate of a choice becomes a parallel edge from the choice's
  input, its pen width and label showing its weight, so one picture shows what the search
  is converging to;
* a derived architecture (`arch`): only the chosen ops and the kept inputs, i.e. the network that
  `train` and `export` build.

Cell instances are clusters (`cluster_<scope>`), composite-op instances are nested clusters,
ops take their colour and shape from the op registry (`OpSpec.style`), and compiler-inserted
adapters are drawn dashed and orange with their channel projection (`adapter 16→32`), since an
adapter is a cost the user did not write and should notice.

Pure text generation, no torch and no Graphviz binary: `cli/cmd_render.py` runs `dot`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

from dasc.compiler.ir import (
    IR, ChoiceNode, CombineNode, InputNode, OpCall, OpNode, OutputNode,
)
from dasc.errors import UsageError
from dasc.ops import REGISTRY

ADAPTER_COLOR = "#ff8c00"
ADAPTER_ATTRS = {"style": "dashed,bold", "color": ADAPTER_COLOR, "fontcolor": ADAPTER_COLOR}
_RECORD_SHAPES = {"record", "Mrecord"}
_WRAP = 44  # characters per line of a candidate list


def quote(text: str, *, record: bool = False) -> str:
    """A DOT double-quoted string that shows `text` literally.

    Backslashes are doubled first (so user text can never form Graphviz escapes such as `\\N` or
    `\\l`), then quotes are escaped and real newlines become DOT's `\\n`. Angle brackets need no
    escaping in quoted strings (only unquoted `<...>` is an HTML label), except in record
    shapes, where `{ } | < >` are field syntax and get a backslash.
    """
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if record:
        for ch in "{}|<>":
            out = out.replace(ch, "\\" + ch)
    out = out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{out}"'


def _attrs(attrs: Mapping[str, Any]) -> str:
    items = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            items.append(f"{key}={value if isinstance(value, int) else f'{value:.3g}'}")
        else:
            record = key == "label" and attrs.get("shape") in _RECORD_SHAPES
            items.append(f"{key}={quote(str(value), record=record)}")
    return f" [{', '.join(items)}]" if items else ""


def _style(op: str) -> dict[str, Any]:
    spec = REGISTRY.get(op)
    if spec is None:  # a composite op's name: no registry entry
        color, shape = "#4c72b0", "box"
    else:
        color, shape = spec.style.color, spec.style.shape
    fill = color + "2e" if color.startswith("#") and len(color) == 7 else "white"
    return {"shape": shape, "color": color, "fillcolor": fill}


def _call_label(call: OpCall) -> str:
    """`conv(c=48, k=5)`: arguments that differ from the op's declared defaults only."""
    spec = REGISTRY.get(call.op)
    defaults = {p.name: p.default for p in spec.params} if spec is not None else {}
    shown = [f"{k}={v}" for k, v in call.args if defaults.get(k) != v]
    return f"{call.op}({', '.join(shown)})" if shown else call.op


def _adapter_label(cin: int | None, cout: int | None) -> str:
    return "adapter" if cin is None or cout is None else f"adapter {cin}→{cout}"


def _wrap(names: Sequence[str]) -> list[str]:
    lines, cur = [], ""
    for name in names:
        piece = name if not cur else f"{cur}, {name}"
        if cur and len(piece) > _WRAP:
            lines.append(cur + ",")
            cur = name
        else:
            cur = piece
    if cur:
        lines.append(cur)
    return lines


def _local(node_id: str, scope: str) -> str:
    return node_id[len(scope) + 1:] if scope and node_id.startswith(scope + ".") else node_id


class _Writer:
    """Collects nodes per (scope, group) cluster and edges, then prints them in a stable order."""

    def __init__(self, ir: IR) -> None:
        self.ir = ir
        self.nodes: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.edges: list[str] = []
        self.order: list[tuple[str, str]] = []

    def node(self, dot_id: str, scope: str, group: str, attrs: Mapping[str, Any]) -> None:
        key = (scope, group)
        if key not in self.nodes:
            self.order.append(key)
        self.nodes[key].append(f"{quote(dot_id)}{_attrs(attrs)};")

    def edge(self, src: str, dst: str, attrs: Mapping[str, Any] | None = None) -> None:
        self.edges.append(f"{quote(src)} -> {quote(dst)}{_attrs(attrs or {})};")

    def render(self, title: str) -> str:
        regions = {r.id: r for r in self.ir.regions}
        out = [f"digraph {quote(self.ir.name)} {{",
               f"  graph [label={quote(title)}, labelloc=t, fontsize=16, rankdir=TB, "
               f"compound=true, newrank=true, charset=\"UTF-8\", fontname=\"Helvetica\"];",
               '  node [fontname="Helvetica", fontsize=10, style="filled", fillcolor="white"];',
               '  edge [fontname="Helvetica", fontsize=8];']
        scopes: list[str] = []
        for scope, _ in self.order:
            if scope not in scopes:
                scopes.append(scope)
        for scope in scopes:
            indent = "  "
            if scope:
                region = regions.get(scope)
                label = scope if region is None or region.key in ("", scope) else \
                    f"{scope}  ({region.key})"
                out.append(f"  subgraph {quote('cluster_' + scope)} {{")
                out.append(f"    graph [label={quote(label)}, style=\"rounded\", "
                           f"color=\"#999999\", fontsize=12];")
                indent = "    "
            for key in [k for k in self.order if k[0] == scope]:
                group = key[1]
                if group:
                    out.append(f"{indent}subgraph {quote('cluster_' + scope + '__' + group)} {{")
                    out.append(f"{indent}  graph [label={quote(_local(group, scope))}, "
                               f"style=\"dotted\", color=\"#bbbbbb\", fontsize=9];")
                    out.extend(f"{indent}  {line}" for line in self.nodes[key])
                    out.append(f"{indent}}}")
                else:
                    out.extend(f"{indent}{line}" for line in self.nodes[key])
            if scope:
                out.append("  }")
        out.extend(f"  {line}" for line in self.edges)
        out.append("}")
        return "\n".join(out) + "\n"


def to_dot(ir: IR, *, arch: Any = None, alpha: Mapping[str, Sequence[float]] | None = None) -> str:
    """The DOT text of `ir`; with `alpha` (α key -> candidate weights) or `arch` (an `Arch`).

    A run or architecture that does not fit the space (unknown α key, wrong number of weights,
    an op the choice does not offer) is a `UsageError`: it usually means the wrong `--run` or
    `--arch` for this space, or different `--set` values than the run used.
    """
    if arch is not None and alpha is not None:
        raise UsageError("render either an architecture or a run's weights, not both",
                         hint="drop --arch or --run")
    w = _Writer(ir)
    if arch is not None:
        _draw_arch(ir, w, arch)
        title = f"{ir.name}: derived architecture"
    else:
        _draw_space(ir, w, alpha)
        title = f"{ir.name}: architecture weights" if alpha is not None else ir.name
    return w.render(title)


# ----------------------------------------------------------------------------- shared pieces


def _channels(ir: IR, node_id: str) -> int | None:
    shape = ir.node(node_id).shape
    return shape.c if shape is not None else None


def _shape_line(shape) -> list[str]:
    return [str(shape)] if shape is not None else []


def _fixed_node(ir: IR, w: _Writer, node_id: str, node) -> None:
    """Input, output, fixed ops, adapters and combinations: the same in every view."""
    if isinstance(node, InputNode):
        w.node(node_id, node.scope, "", {"label": "\n".join([node.name, *_shape_line(node.shape)]),
                                         "shape": "invhouse", "color": "#333333"})
    elif isinstance(node, OutputNode):
        w.node(node_id, node.scope, "", {"label": "\n".join(["output", *_shape_line(node.shape)]),
                                         "shape": "house", "color": "#333333"})
    elif isinstance(node, OpNode) and (node.adapter or node.call.op == "adapter"):
        cin = _channels(ir, node.inputs[0]) if node.inputs else None
        cout = node.shape.c if node.shape is not None else node.call.arg("c")
        w.node(node_id, node.scope, node.group,
               {"label": _adapter_label(cin, cout), "shape": "box", **ADAPTER_ATTRS,
                "tooltip": node.adapter or "adapter"})
    elif isinstance(node, OpNode):
        w.node(node_id, node.scope, node.group,
               {"label": "\n".join([_call_label(node.call), *_shape_line(node.shape)]),
                **_style(node.call.op)})
    elif isinstance(node, CombineNode):
        sign = {"sum": "+", "concat": "concat"}.get(node.kind, node.kind)
        lines = [f"{sign} {_local(node_id, node.scope)}"] + \
            ([f"keep {node.keep}"] if node.keep else [])
        w.node(node_id, node.scope, "", {"label": "\n".join(lines), **_style(node.kind),
                                         "tooltip": node_id})


def _edge_attrs(ir: IR, src: str, dst: str) -> dict[str, Any]:
    """Edges into and out of an adapter are dashed orange like the adapter itself."""
    for n in (ir.node(src), ir.node(dst)):
        if isinstance(n, OpNode) and (n.adapter or n.call.op == "adapter"):
            return {"style": "dashed", "color": ADAPTER_COLOR}
    return {}


def _candidate_adapters(ir: IR, node: ChoiceNode) -> list[tuple[str, str]]:
    """(candidate name, 'adapter a→b') for each candidate the compiler had to project."""
    cin = _channels(ir, node.inputs[0]) if node.inputs else None
    found = []
    for cand in node.candidates:
        for i, block in enumerate(cand.nodes):
            if block.adapter or block.call.op == "adapter":
                src = cand.nodes[block.inputs[0]].shape if block.inputs and block.inputs[0] >= 0 \
                    else None
                a = src.c if src is not None else (cin if i == 0 else None)
                b = block.shape.c if block.shape is not None else block.call.arg("c")
                found.append((cand.name, _adapter_label(a, b)))
    return found


# ----------------------------------------------------------------------------- space and α


def _candidate_sets(ir: IR) -> dict[tuple[str, ...], str]:
    """Names (`S1`, `S2`, ...) for candidate sets used by several choices, e.g. DARTS's eight
    ops on 14 edges of every cell: each choice then shows `S1` instead of the whole list, and
    one legend box spells the set out once."""
    uses: dict[tuple[str, ...], int] = defaultdict(int)
    for _, node in ir.choices():
        uses[tuple(c.name for c in node.candidates)] += 1
    common = [names for names, n in uses.items() if n > 1 and len(names) > 3]
    return {names: f"S{i + 1}" for i, names in enumerate(common)}


def _draw_space(ir: IR, w: _Writer, alpha: Mapping[str, Sequence[float]] | None) -> None:
    sets = _candidate_sets(ir) if alpha is None else {}
    if sets:
        lines = [f"{name} = {{ {chr(10).join(_wrap(list(names)))} }}"
                 for names, name in sets.items()]
        w.node("candidate sets", "", "", {"label": "\n".join(lines), "shape": "note",
                                          "color": "#b8860b", "fillcolor": "#fff6d5"})
    for node_id, node in ir.nodes():
        if not isinstance(node, ChoiceNode):
            _fixed_node(ir, w, node_id, node)
            for src in node.inputs:
                w.edge(src, node_id, _edge_attrs(ir, src, node_id))
            continue
        local = _local(node_id, node.scope)
        adapters = _candidate_adapters(ir, node)
        if alpha is None:
            names = tuple(c.name for c in node.candidates)
            listed = [f"{len(names)} ops: {sets[names]}"] if names in sets else _wrap(list(names))
            lines = [f"choice {local}", *listed, *_shape_line(node.shape)]
            w.node(node_id, node.scope, "", {"label": "\n".join(lines), "shape": "box",
                                             "style": "rounded,filled", "fillcolor": "#fff6d5",
                                             "color": "#b8860b", "tooltip": node.alpha})
            for src in node.inputs:
                w.edge(src, node_id, {"style": "bold", "color": "#b8860b"})
        else:
            weights = _weights(alpha, node)
            w.node(node_id, node.scope, "", {"label": local, "shape": "ellipse",
                                             "color": "#b8860b", "tooltip": node.alpha})
            top = max(weights) if weights and max(weights) > 0 else 1.0
            adapted = dict(adapters)
            for cand, weight in zip(node.candidates, weights):
                label = f"{cand.name} {weight:.2f}"
                attrs: dict[str, Any] = {"label": label, "penwidth": 0.3 + 4.7 * max(weight, 0) / top,
                                         "color": _style(cand.name)["color"]}
                if cand.name in adapted:
                    attrs.update({"label": f"{label}\n+ {adapted[cand.name]}",
                                  "style": "dashed", "fontcolor": ADAPTER_COLOR})
                for src in node.inputs:
                    w.edge(src, node_id, attrs)
        if adapters and alpha is None:
            note = f"{node_id}/adapters"
            lines = [f"{label}  ({name})" for name, label in adapters]
            w.node(note, node.scope, "", {"label": "\n".join(lines), "shape": "note",
                                          **ADAPTER_ATTRS})
            w.edge(note, node_id, {"style": "dashed", "color": ADAPTER_COLOR,
                                   "arrowhead": "none"})


def _weights(alpha: Mapping[str, Sequence[float]], node: ChoiceNode) -> list[float]:
    if node.alpha not in alpha:
        raise UsageError(f"the run has no weights for choice '{node.alpha}'",
                         hint="render a run of this space, compiled with the same --set values")
    values = [float(v) for v in alpha[node.alpha]]
    if len(values) != len(node.candidates):
        raise UsageError(f"choice '{node.alpha}' has {len(node.candidates)} candidates but the "
                         f"run gives {len(values)} weights",
                         hint="render a run of this space, compiled with the same --set values")
    return [v if math.isfinite(v) else 0.0 for v in values]


# ----------------------------------------------------------------------------- architecture


def _reachable(start: str, inputs: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(inputs[n])
    return seen


def _draw_arch(ir: IR, w: _Writer, arch: Any) -> None:
    """Only what the architecture keeps. Choices on dropped edges need no op (arch.json leaves
    them out), so ops are looked up only for choices that still reach the output."""
    choices = dict(getattr(arch, "choices", ()) or ())
    keeps = {k: tuple(v) for k, v in (getattr(arch, "keeps", ()) or ())}
    kept: dict[str, tuple[str, ...]] = {}
    for node_id, node in ir.nodes():
        inputs = tuple(node.inputs)
        if isinstance(node, CombineNode) and node.select is not None and node.select in keeps:
            positions = keeps[node.select]
            bad = [p for p in positions if not 0 <= p < len(inputs)]
            if bad:
                raise UsageError(f"the architecture keeps input {bad[0]} of '{node.select}', "
                                 f"which has {len(inputs)} inputs",
                                 hint="check that the architecture was made for this space")
            inputs = tuple(inputs[p] for p in sorted(positions))
        kept[node_id] = inputs
    reached = _reachable(ir.output, kept)
    chosen: dict[str, Any] = {}
    zero: set[str] = set()
    live_inputs: dict[str, tuple[str, ...]] = {}
    for node_id, node in ir.nodes():
        inputs = kept[node_id]
        if node_id in reached and isinstance(node, ChoiceNode):
            op = choices.get(node.alpha)
            if op is None:
                raise UsageError(f"the architecture does not choose an op for '{node.alpha}'",
                                 hint="derive the architecture from this space "
                                      "(dasc derive) or check the --set values")
            cand = next((c for c in node.candidates if c.name == op), None)
            if cand is None:
                names = ", ".join(c.name for c in node.candidates)
                raise UsageError(f"the architecture picks '{op}' for '{node.alpha}', which "
                                 f"offers only: {names}",
                                 hint="check that the architecture was made for this space")
            chosen[node_id] = cand
            if cand.zero:
                zero.add(node_id)
        # An edge whose op is `none` carries nothing; neither does a fixed op or a sum fed only
        # by such edges (the adapter behind a `none` choice): drop them all from the picture.
        elif inputs and (isinstance(node, OpNode) or
                         (isinstance(node, CombineNode) and node.kind == "sum")) and \
                all(i in zero for i in inputs):
            zero.add(node_id)
        live_inputs[node_id] = tuple(i for i in inputs if i not in zero)
    live = _reachable(ir.output, live_inputs)
    out_of: dict[str, str] = {}
    for node_id, node in ir.nodes():
        if node_id not in live:
            continue
        out_of[node_id] = node_id
        if isinstance(node, ChoiceNode):
            cand = chosen[node_id]
            w.node(node_id, node.scope, "",
                   {"label": "\n".join([cand.name, *_shape_line(node.shape)]),
                    **_style(cand.name), "tooltip": f"{node.alpha} = {cand.name}"})
            prev = node_id
            for i, (name, label) in enumerate(a for a in _candidate_adapters(ir, node)
                                              if a[0] == cand.name):
                extra = f"{node_id}/adapter{i}"
                w.node(extra, node.scope, "", {"label": label, "shape": "box", **ADAPTER_ATTRS})
                w.edge(prev, extra, {"style": "dashed", "color": ADAPTER_COLOR})
                prev = extra
            out_of[node_id] = prev
        else:
            _fixed_node(ir, w, node_id, node)
        for src in live_inputs[node_id]:
            w.edge(out_of[src], node_id, _edge_attrs(ir, src, node_id))
