"""Lowering: the checked IR becomes a `torch.fx.GraphModule`, built node by node (not traced).

The same function lowers a super-network (an IR with choice points: mixed ops, α, a gate) and a
derived network (a pruned IR: plain ops only). Module paths follow IR node ids, so the
generated code and the state dict read like the space the user wrote: `darts3.n2_e0` is the
mixed op on the first input of node n2 in the fourth `darts` cell.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from dasc.compiler.ir import (IR, Candidate, ChoiceNode, CombineNode, InputNode, OpNode,
                              OutputNode)
from dasc.ops import REGISTRY
from dasc.ops.registry import Shape, resolve_args
from dasc.errors import UsageError
from dasc.runtime.gates import Gate, alpha_size
from dasc.runtime.mixed import Block, MixedOp, sum_inputs


@dataclass(frozen=True)
class LoweringOptions:
    """How choice points become modules.

    `share`: compute a parameter-free candidate (pooling, identity) and the leading ReLU of
    conv candidates once per input, however many choices read that input (a DARTS cell has 14
    edges but 5 distinct inputs). `channels_last`: NHWC memory format, which makes depthwise
    convolutions several times faster on CPU. `checkpoint`: recompute mixed ops in the backward
    pass instead of storing their activations. `recompute_pointwise`: recompute only the
    outputs of 1×1 conv + BN pairs inside conv candidates (cheap, a large share of memory).
    """

    gate: str = "softmax"
    tau: float = 1.0
    partial_channels: int = 1
    alpha_init_std: float = 1e-3
    share: bool = True
    channels_last: bool = False
    checkpoint: bool = False
    recompute_pointwise: bool = False


@dataclass
class AlphaInfo:
    """What the runtime needs to know about one α key (shared by `instances` choice points)."""

    key: str
    attr: str
    candidates: tuple[str, ...]
    zero: tuple[bool, ...]
    instances: int = 0
    choice_ids: list[str] = field(default_factory=list)


@dataclass
class NetInfo:
    """Side table attached to a lowered module as `module.dasc`."""

    name: str
    alphas: dict[str, AlphaInfo]
    mixed_ops: dict[str, str]  # choice node id -> module target

    def alpha_keys(self) -> list[str]:
        return list(self.alphas)


def _ident(text: str) -> str:
    name = re.sub(r"\W+", "_", text).strip("_") or "node"
    return name if not name[0].isdigit() else f"n{name}"


def module_target(node_id: str, scope: str) -> str:
    """`darts3.n2.e0` in scope `darts3` -> `darts3.n2_e0`; network-level ids are flattened."""
    if scope and node_id.startswith(scope + "."):
        return f"{_ident(scope)}.{_ident(node_id[len(scope) + 1:])}"
    return _ident(node_id)


def build_op(op: str, args: dict[str, int], in_shapes: tuple[Shape, ...]) -> nn.Module:
    spec = REGISTRY.get(op)
    if spec is None:  # the compiler rejects unknown ops; reaching this is a bug
        raise KeyError(f"op {op!r} is not registered")
    return spec.build(in_shapes, resolve_args(spec, args))


def build_candidate(cand: Candidate, in_shape: Shape, channel_scale: int = 1) -> nn.Module:
    """A candidate's module: the op itself when it is one op, else a `Block`."""
    def scaled(s: Shape) -> Shape:
        return Shape(s.c // channel_scale, s.h, s.w) if channel_scale > 1 else s

    modules, wiring = [], []
    for bn in cand.nodes:
        shapes = tuple(scaled(in_shape) if i < 0 else scaled(cand.nodes[i].shape) for i in bn.inputs)
        modules.append(build_op(bn.call.op, bn.call.argdict(), shapes))
        wiring.append(bn.inputs)
    if len(modules) == 1 and wiring[0] == (-1,):
        return modules[0]
    return Block(modules, wiring)


def _candidate_key(index: int, cand: Candidate, used: set[str]) -> str:
    key = _ident(cand.name)
    if key in used:
        key = f"{key}_{index}"
    used.add(key)
    return key


def _stride(cand_list: tuple[Candidate, ...]) -> int:
    for cand in cand_list:
        for bn in cand.nodes:
            stride = bn.call.arg("stride")
            if stride and stride > 1:
                return stride
    return 1


class _Builder:
    """Accumulates modules and fx nodes while walking the IR in topological order."""

    def __init__(self, ir: IR, options: LoweringOptions) -> None:
        self.ir = ir
        self.options = options
        self.graph = fx.Graph()
        self.modules: dict[str, nn.Module] = {}
        self.values: dict[str, fx.Node] = {}
        self.alphas: dict[str, AlphaInfo] = {}
        self.alpha_store = nn.Module()
        self.weight_nodes: dict[str, fx.Node] = {}
        self.mixed: dict[str, str] = {}
        self.used_targets: set[str] = set()
        self.shared: dict[tuple[str, str], fx.Node] = {}

    def target(self, node_id: str, scope: str) -> str:
        target = module_target(node_id, scope)
        base, n = target, 1
        while target in self.used_targets:
            target, n = f"{base}_{n}", n + 1
        self.used_targets.add(target)
        return target

    def in_shapes(self, node) -> tuple[Shape, ...]:
        return tuple(self.ir.node(i).shape for i in node.inputs)

    def args(self, node) -> tuple[fx.Node, ...]:
        return tuple(self.values[i] for i in node.inputs)

    def weights_for(self, choice: ChoiceNode, node_id: str) -> fx.Node:
        info = self.alphas.get(choice.alpha)
        if info is None:
            attr = _ident(choice.alpha)
            while hasattr(self.alpha_store, attr):
                attr += "_"
            size = alpha_size(self.options.gate, len(choice.candidates))
            param = nn.Parameter(self.options.alpha_init_std * torch.randn(size))
            self.alpha_store.register_parameter(attr, param)
            info = AlphaInfo(choice.alpha, attr, tuple(c.name for c in choice.candidates),
                             tuple(c.zero for c in choice.candidates))
            self.alphas[choice.alpha] = info
            alpha_node = self.graph.get_attr(f"alphas.{attr}")
            self.weight_nodes[choice.alpha] = self.graph.create_node(
                "call_module", "gate", (alpha_node,), {"key": choice.alpha}, name=f"w_{attr}")
        info.instances += 1
        info.choice_ids.append(node_id)
        return self.weight_nodes[choice.alpha]

    def lower_node(self, node_id: str, node) -> None:
        g = self.graph
        if isinstance(node, InputNode):
            value = g.placeholder(_ident(node.name))
            if self.options.channels_last:
                value = g.call_method("contiguous", (value,),
                                      {"memory_format": torch.channels_last})
            self.values[node_id] = value
        elif isinstance(node, OpNode):
            target = self.target(node_id, node.scope)
            self.modules[target] = build_op(node.call.op, node.call.argdict(), self.in_shapes(node))
            self.values[node_id] = g.call_module(target, self.args(node))
        elif isinstance(node, ChoiceNode):
            self.values[node_id] = self.lower_choice(node_id, node)
        elif isinstance(node, CombineNode):
            if node.kind == "concat":
                self.values[node_id] = g.call_function(torch.cat, (list(self.args(node)),),
                                                       {"dim": 1})
            elif len(node.inputs) == 1:
                self.values[node_id] = self.values[node.inputs[0]]
            else:
                self.values[node_id] = g.call_function(sum_inputs, self.args(node))
        elif isinstance(node, OutputNode):
            logits = g.call_function(torch.flatten, (self.values[node.inputs[0]], 1))
            g.output(logits)
        else:  # pragma: no cover - the verifier rejects unknown payloads
            raise TypeError(f"cannot lower {type(node).__name__}")

    def lower_choice(self, node_id: str, node: ChoiceNode) -> fx.Node:
        (in_shape,) = self.in_shapes(node)
        partial = self.options.partial_channels
        if partial > 1 and not all(c.shape.c == in_shape.c for c in node.candidates if not c.zero):
            partial = 1  # PC-DARTS needs channel-preserving candidates; others mix fully
        if partial > 1 and in_shape.c % partial:
            partial = 1
        used: set[str] = set()
        candidates = {_candidate_key(i, c, used): build_candidate(c, in_shape, partial)
                      for i, c in enumerate(node.candidates)}
        shape = node.shape
        hard = self.options.gate == "gumbel_hard"
        plan, pre = [], []
        if self.options.share and partial == 1 and not hard:
            plan, pre = self.share_plan(node, list(candidates.values()), in_shape)
        mixed = MixedOp(candidates, [c.zero for c in node.candidates], (shape.c, shape.h, shape.w),
                        stride=_stride(node.candidates), partial=partial, plan=plan,
                        checkpoint=self.options.checkpoint)
        mixed.hard = hard
        target = self.target(node_id, node.scope)
        self.modules[target] = mixed
        self.mixed[node_id] = target
        weights = self.weights_for(node, node_id)
        return self.graph.call_module(target, (self.values[node.inputs[0]], weights, *pre))

    def share_plan(self, node: ChoiceNode, modules: list[nn.Module],
                   in_shape: Shape) -> tuple[list[tuple[str, int]], list[fx.Node]]:
        """Common subexpressions across the choices that read one input (see LoweringOptions)."""
        src = node.inputs[0]
        plan: list[tuple[str, int]] = []
        pre: list[fx.Node] = []
        for cand, module in zip(node.candidates, modules):
            key: tuple[str, str] | None = None
            if cand.zero or len(cand.nodes) != 1:
                plan.append(("own", -1))
                continue
            call = cand.nodes[0].call
            spec = REGISTRY.get(call.op)
            if spec.skip and cand.nodes[0].shape == in_shape:
                key = (src, "identity")
                self.shared.setdefault(key, self.values[src])
                kind = "value"
            elif spec.params_count((in_shape,), resolve_args(spec, call.argdict())) == 0:
                key = (src, str(call))
                if key not in self.shared:
                    target = self.target(f"{src}.{call.op}_{call.arg('stride', 1)}", node.scope)
                    self.modules[target] = build_op(call.op, call.argdict(), (in_shape,))
                    self.shared[key] = self.graph.call_module(target, (self.values[src],))
                kind = "value"
            elif hasattr(module, "forward_from_relu"):
                key = (src, "relu")
                if key not in self.shared:
                    self.shared[key] = self.graph.create_node(
                        "call_function", torch.relu, (self.values[src],),
                        name=f"relu_{_ident(src)}")
                kind = "relu"
            else:
                plan.append(("own", -1))
                continue
            if self.shared[key] not in pre:
                pre.append(self.shared[key])
            plan.append((kind, pre.index(self.shared[key])))
        return plan, pre


# PyTorch 2.13's CPU kernels corrupt the heap on channels-last 1x1 convolutions with a single
# output channel (FactorizedReduce at c=2 halves to 1): channels-last only for wider networks.
CHANNELS_LAST_MIN = 8


def _min_channels(ir: IR) -> int:
    widths = [node.shape.c for _, node in ir.nodes()
              if node.shape is not None and not isinstance(node, InputNode)]
    for _, node in ir.choices():
        widths.extend(b.shape.c for c in node.candidates for b in c.nodes if b.shape is not None)
    return min(widths, default=CHANNELS_LAST_MIN)


def lower(ir: IR, options: LoweringOptions | None = None) -> fx.GraphModule:
    """IR -> GraphModule with `.dasc` (a NetInfo); α live under `alphas`, the gate under `gate`."""
    options = options or LoweringOptions()
    check_fits_in_memory(ir)
    if options.channels_last and _min_channels(ir) < CHANNELS_LAST_MIN:
        options = dataclasses.replace(options, channels_last=False)
    builder = _Builder(ir, options)
    for node_id, node in ir.nodes():
        builder.lower_node(node_id, node)
    root = nn.Module()
    for target, module in builder.modules.items():
        _set_submodule(root, target, module)
    if builder.alphas:
        root.add_module("alphas", builder.alpha_store)
        root.add_module("gate", Gate(options.gate, options.tau))
    builder.graph.lint()
    gm = fx.GraphModule(root, builder.graph, class_name=_ident(ir.name).title() + "Net")
    if options.channels_last:
        gm = gm.to(memory_format=torch.channels_last)
    if options.recompute_pointwise:
        for mixed in (m for m in gm.modules() if isinstance(m, MixedOp)):
            for cand in mixed.candidates.values():
                if hasattr(cand, "forward_from_relu"):
                    cand.recompute_pointwise = True
    gm.dasc = NetInfo(ir.name, builder.alphas, builder.mixed)
    return gm


def check_fits_in_memory(ir: IR) -> None:
    """Refuse, before allocating anything, a network whose training state cannot fit in RAM.

    `--set C=1000000000` compiles (sizes are symbolic), but building it would make torch fail
    deep inside a layer constructor or, with the kernel's memory overcommit, get the process
    killed without a word. 16 bytes per fp32 parameter: weights, gradients, momentum and the
    copy a checkpoint makes.
    """
    from dasc.compiler.cost import supernet_cost

    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: let torch decide
        return
    params = supernet_cost(ir).params
    if params * 16 > ram:
        raise UsageError(f"the network has {params:,} parameters: training it needs about "
                         f"{params * 16 / 2**30:,.0f} GiB, more than this machine's "
                         f"{ram / 2**30:,.0f} GiB of memory", ir.span,
                         "lower the space's channels or layers with --set (e.g. --set C=16)")


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    *parents, leaf = target.split(".")
    owner = root
    for part in parents:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = getattr(owner, part)
    owner.add_module(leaf, module)


def arch_parameters(gm: nn.Module) -> list[nn.Parameter]:
    """α, kept apart from the weights so they get their own optimizer (bilevel search)."""
    store = getattr(gm, "alphas", None)
    return list(store.parameters()) if store is not None else []


def weight_parameters(gm: nn.Module) -> list[nn.Parameter]:
    alpha_ids = {id(p) for p in arch_parameters(gm)}
    return [p for p in gm.parameters() if id(p) not in alpha_ids]


def alpha_tensor(gm: nn.Module, key: str) -> torch.Tensor:
    return getattr(gm.alphas, gm.dasc.alphas[key].attr)


def gate_weights(gm: nn.Module) -> dict[str, list[float]]:
    """Current mixing weights per α key, as the gate computes them in eval mode."""
    was_training = gm.gate.training
    gm.gate.eval()
    try:
        with torch.no_grad():
            return {key: gm.gate(alpha_tensor(gm, key)).tolist() for key in gm.dasc.alphas}
    finally:
        gm.gate.train(was_training)


def emit_fx_code(ir: IR, options: LoweringOptions | None = None) -> str:
    """The generated Python of the super-network, for `dasc compile --emit fx`."""
    return lower(ir, options).code
