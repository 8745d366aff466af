"""`dasc export`: a derived network as ONNX, verified before a single byte reaches the disk.

The promise is an ONNX file that passes `onnx.checker.check_model(full_check=True)` and
computes what the PyTorch module computes. So the model is exported into memory, checked,
run in onnxruntime on random inputs at two batch sizes against the module in eval mode, and
only then written atomically; a model that fails any check raises `ExportError` and leaves
no file behind (not even a temporary one).

Names. The legacy TorchScript exporter (onnxscript, which the new exporter needs, is not a
dependency) names a node after the *last* component of each called module's path, and the
fx GraphModule calls `cell3.n2_e0` directly without entering `cell3`: two cells' `n2_e0`
would both become `/n2_e0/...`, and sums and concats would get no scope at all. So the
module is re-wired for export: every fx node becomes a top-level submodule with a unique
placeholder name, and the ONNX names are rewritten afterwards to the IR node ids the user
knows (`/cell3.n2.e0/op/op.1/Conv`, `/cell3.n2/Add`), parameters keep their state-dict keys
(`cell3.n2_e0.op.1.weight`), and BN-folded constants are named after their consumer.
"""

from __future__ import annotations

import copy
import io
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from dasc import __version__
from dasc.compiler.ir import IR, CombineNode, InputNode, OpNode, OutputNode
from dasc.errors import DascError, Span
from dasc.fsutil import atomic_write_bytes, check_output_path
from dasc.runtime.train import check_derived

OUTPUT_NAME = "logits"
TOLERANCE = 1e-4
_TOKEN = re.compile(r"__dasc(\d+)__")
_ROLES = {"Conv": ("input", "weight", "bias"), "Gemm": ("input", "weight", "bias"),
          "BatchNormalization": ("input", "scale", "bias", "mean", "var")}


class ExportError(DascError):
    """The exported model failed a check (ONNX checker or onnxruntime parity); nothing written."""


@dataclass(frozen=True)
class ExportReport:
    """What `dasc export` prints: where the model went and how well it matched PyTorch."""

    path: str
    opset: int
    bytes: int
    nodes: int
    input_name: str
    input_shape: tuple[int, int, int]
    max_abs_diff: float
    diffs: dict[int, float]          # batch size -> max |onnxruntime - torch|
    metadata: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"path": self.path, "opset": self.opset, "bytes": self.bytes,
                "nodes": self.nodes, "input": self.input_name,
                "input_shape": list(self.input_shape), "max_abs_diff": self.max_abs_diff,
                "diffs": {str(k): v for k, v in self.diffs.items()},
                "metadata": dict(self.metadata), "seconds": self.seconds}


# ----------------------------------------------------------------------------- re-wiring


class _Call(nn.Module):
    """A function call of the fx graph (sum, concat, flatten) as a module, so it gets a scope."""

    def __init__(self, fn: Callable, kwargs: Mapping[str, object]) -> None:
        super().__init__()
        self.fn = fn
        self.kwargs = dict(kwargs)

    def forward(self, *args):
        return self.fn(*args, **self.kwargs)


def _expected_fx_ops(ir: IR) -> list[tuple[str, str]]:
    """The fx nodes `lower` creates for a derived IR, in order, each with its IR node id."""
    out: list[tuple[str, str]] = []
    for node_id, node in ir.nodes():
        if isinstance(node, InputNode):
            out.append(("placeholder", node_id))
        elif isinstance(node, OpNode):
            out.append(("call_module", node_id))
        elif isinstance(node, CombineNode):
            if node.kind == "concat" or len(node.inputs) > 1:
                out.append(("call_function", node_id))
        elif isinstance(node, OutputNode):
            out += [("call_function", node_id), ("output", node_id)]
    return out


def source_names(ir: IR, gm: fx.GraphModule) -> dict[str, str]:
    """fx node name -> IR node id, by walking both in creation order.

    The walk is checked node by node (op kinds must agree); if the lowering ever creates
    nodes differently, the names fall back to the fx names, which still follow the IR ids.
    """
    fx_nodes = list(gm.graph.nodes)
    expected = _expected_fx_ops(ir)
    if [n.op for n in fx_nodes] != [op for op, _ in expected]:
        return {n.name: (n.target if n.op == "call_module" else n.name) for n in fx_nodes}
    return {n.name: node_id for n, (_, node_id) in zip(fx_nodes, expected)}


def _flat_module(ir: IR, gm: fx.GraphModule) -> tuple[fx.GraphModule, dict[str, str], dict[str, str]]:
    """A copy of `gm` whose every computing node is a top-level `__dasc<i>__` submodule.

    Returns the module, token -> label (IR node id) and token -> state-dict prefix.
    """
    names = source_names(ir, gm)
    graph = fx.Graph()
    root = nn.Module()
    env: dict[fx.Node, fx.Node] = {}
    labels: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for i, node in enumerate(gm.graph.nodes):
        args = fx.map_arg(node.args, env.__getitem__)
        if node.op == "placeholder":
            env[node] = graph.placeholder(node.name)
        elif node.op == "output":
            graph.output(args[0])
        elif node.op in ("call_module", "call_function"):
            token = f"__dasc{i}__"
            if node.op == "call_module":
                root.add_module(token, gm.get_submodule(node.target))
                prefixes[token] = node.target
                kwargs = fx.map_arg(node.kwargs, env.__getitem__)
            else:
                root.add_module(token, _Call(node.target, node.kwargs))
                kwargs = {}
            labels[token] = names.get(node.name, node.name)
            env[node] = graph.call_module(token, args, kwargs)
        else:  # get_attr / call_method: a derived network has none (α and gates are gone)
            raise ExportError(f"cannot export fx node {node.name} ({node.op})", ir.span,
                              "export a derived network (pass --arch), not the super-network")
    graph.lint()
    return fx.GraphModule(root, graph), labels, prefixes


def _rename(model, labels: Mapping[str, str], prefixes: Mapping[str, str]) -> None:
    """Rewrite placeholder tokens in every name to IR ids (nodes) or state-dict keys (weights)."""
    def new_name(name: str) -> str:
        m = _TOKEN.match(name)
        if m and name[m.end():m.end() + 1] == "." and m.group(0) in prefixes:
            return prefixes[m.group(0)] + name[m.end():]
        return _TOKEN.sub(lambda t: labels.get(t.group(0), t.group(0)), name)

    g = model.graph
    for node in g.node:
        node.name = new_name(node.name)
    # Constants the exporter made up (BN folded into a conv, de-duplicated by Identity nodes)
    # are called `onnx::Conv_53`: name them after the op that finally uses them instead.
    consumers: dict[str, list] = {}
    for node in g.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, slot))

    def user_of(name: str) -> str | None:
        uses = consumers.get(name, ())
        for node, slot in uses:
            if node.op_type != "Identity":
                roles = _ROLES.get(node.op_type, ())
                return f"{node.name}.{roles[slot] if slot < len(roles) else f'in{slot}'}"
        for node, _ in uses:  # only copied by Identity nodes: a constant shared by several ops
            used = user_of(node.output[0])
            if used:
                return f"{used}.shared"
        return None

    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for name in [i.name for i in g.initializer] + [o for n in g.node for o in n.output] \
            + [i for n in g.node for i in n.input if i]:
        if name in mapping:
            continue
        new = (name.startswith("onnx::") and user_of(name)) or new_name(name)
        base, k = new, 1
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        mapping[name] = new
        taken.add(new)
    for node in g.node:
        if node.op_type == "Identity" and not _TOKEN.search(node.name) and node.output:
            node.name = f"{mapping.get(node.output[0], node.output[0])}/Identity"
    if len(set(mapping.values())) != len(mapping):  # never expected: keep the exporter's names
        return
    for init in g.initializer:
        init.name = mapping[init.name]
    for node in g.node:
        node.input[:] = [mapping.get(n, n) if n else n for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = mapping.get(vi.name, vi.name)


# ----------------------------------------------------------------------------- export


def _metadata(ir: IR, meta: Mapping[str, object]) -> dict[str, str]:
    """metadata_props: space, architecture (JSON) and dasc version, plus whatever the caller adds."""
    shape = ir.node(ir.input).shape
    out = {"space": str(meta.get("space", ir.name)), "dasc_version": __version__,
           "input_shape": json.dumps([shape.c, shape.h, shape.w])}
    for key, value in meta.items():
        if key != "space":
            out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    out.setdefault("arch", "null")
    return out


def onnx_model(ir_derived: IR, gm: fx.GraphModule, *, opset: int = 17,
               meta: Mapping[str, object] | None = None):
    """The ONNX ModelProto of a derived network, renamed and annotated; not yet verified."""
    import onnx

    check_derived(ir_derived)
    module = copy.deepcopy(gm).to("cpu").eval()
    flat, labels, prefixes = _flat_module(ir_derived, module)
    inp = ir_derived.node(ir_derived.input)
    input_name = re.sub(r"\W+", "_", inp.name) or "input"
    x = torch.zeros((2, inp.shape.c, inp.shape.h, inp.shape.w))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of one that needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(flat, (x,), buffer, dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=[OUTPUT_NAME],
                          dynamic_axes={input_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    _rename(model, labels, prefixes)
    model.graph.name = ir_derived.name
    model.producer_name, model.producer_version = "dasc", __version__
    model.doc_string = f"dasc derived network of space {ir_derived.name}"
    del model.metadata_props[:]
    for key, value in _metadata(ir_derived, meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def check_onnx(model, span: Span | None = None) -> None:
    """`onnx.checker.check_model(full_check=True)`, its failures as `ExportError`."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the exported ONNX model fails onnx.checker: {first}", span,
                          "this is a dasc bug; please report it with the space and arch") from None


def parity(data: bytes, gm: nn.Module, input_name: str, shape: tuple[int, int, int],
           batches: tuple[int, ...] = (1, 3), seed: int = 0) -> dict[int, float]:
    """max |onnxruntime − torch| per batch size, on seeded random inputs, module in eval mode."""
    import onnxruntime as ort

    module = copy.deepcopy(gm).to("cpu").eval()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs: dict[int, float] = {}
    for batch in batches:
        x = torch.randn((batch, *shape), generator=gen)
        with torch.no_grad():
            want = module(x).numpy()
        (got,) = session.run([OUTPUT_NAME], {input_name: x.numpy()})
        if got.shape != want.shape:
            diffs[batch] = float("inf")
            continue
        diff = np.abs(np.asarray(got, dtype=np.float64) - want.astype(np.float64))
        diffs[batch] = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    return diffs


def export_onnx(ir_derived: IR, gm: fx.GraphModule, path: str | Path, *, opset: int = 17,
                meta: Mapping[str, object], tolerance: float = TOLERANCE,
                batches: tuple[int, ...] = (1, 3)) -> ExportReport:
    """Export, check, compare in onnxruntime, and only then write `path` atomically."""
    started = time.perf_counter()
    target = check_output_path(path)  # a typo in -o fails before the work
    model = onnx_model(ir_derived, gm, opset=opset, meta=meta)
    check_onnx(model, ir_derived.span)
    data = model.SerializeToString()
    input_name = model.graph.input[0].name
    shape = ir_derived.node(ir_derived.input).shape
    diffs = parity(data, gm, input_name, (shape.c, shape.h, shape.w), batches)
    worst = max(diffs.values())
    if not worst <= tolerance:
        detail = ", ".join(f"batch {b}: {d:.3g}" for b, d in diffs.items())
        raise ExportError(f"onnxruntime disagrees with PyTorch (max |diff| {worst:.3g} > "
                          f"{tolerance:g}; {detail}); nothing was written", ir_derived.span,
                          "this is a dasc bug; please report it with the space and arch")
    atomic_write_bytes(target, data)
    return ExportReport(path=str(target), opset=opset, bytes=len(data), nodes=len(model.graph.node),
                        input_name=input_name, input_shape=(shape.c, shape.h, shape.w),
                        max_abs_diff=worst, diffs=diffs,
                        metadata={p.key: p.value for p in model.metadata_props},
                        seconds=round(time.perf_counter() - started, 3))
