"""The runtime pieces a lowered super-network is made of: candidate blocks and mixed ops.

They are ordinary modules so that the generated fx code reads `darts0.n2_e0(p0, w_darts_n2_e0)`
and a user can put the super-network in their own training loop.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dasc.runtime.layers import frozen_bn_stats


class Block(nn.Module):
    """A candidate made of several primitive ops (a composite op, or an op plus its adapter).

    `wiring[k]` lists the inputs of op k: -1 is the block's input, j >= 0 the output of op j.
    """

    def __init__(self, ops: list[nn.Module], wiring: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.wiring = [tuple(w) for w in wiring]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor] = []
        for op, inputs in zip(self.ops, self.wiring):
            values.append(op(*[x if i < 0 else values[i] for i in inputs]))
        return values[-1]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups (PC-DARTS) so every channel takes the mixture path in turn."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedOp(nn.Module):
    """Σ_i w_i · op_i(x) over the candidates of one choice point.

    Candidates that are `none` contribute exactly zero and are never computed. When the weights
    are hard (one-hot from a hard Gumbel gate or a fixed architecture) only the selected
    candidate runs, as GDAS does. With `partial > 1` only 1/partial of the channels go through
    the mixture and the rest bypass it (PC-DARTS), which divides activation memory.

    `plan[i]` says where candidate i's output comes from: ("own", -1) runs the candidate on x;
    ("relu", j) runs it after its leading ReLU on the shared `pre[j]` = relu(x); ("value", j)
    takes `pre[j]`, a parameter-free op computed once for every choice reading the same input.
    With `checkpoint`, the mixture's activations are recomputed in the backward pass instead of
    stored (BN running statistics are frozen during the recomputation so they update once).
    """

    def __init__(self, candidates: dict[str, nn.Module], zero: list[bool],
                 out_shape: tuple[int, int, int], stride: int = 1, partial: int = 1,
                 plan: list[tuple[str, int]] | None = None, checkpoint: bool = False) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict(candidates)
        self.zero = list(zero)
        self.out_shape = tuple(out_shape)
        self.stride = stride
        self.partial = partial
        self.plan = list(plan) if plan else [("own", -1)] * len(candidates)
        self.checkpoint = checkpoint
        self.hard = False

    def _output(self, index: int, op: nn.Module, x: torch.Tensor,
                pre: tuple[torch.Tensor, ...]) -> torch.Tensor:
        kind, slot = self.plan[index]
        if kind == "value":
            return pre[slot]
        if kind == "relu":
            return op.forward_from_relu(pre[slot])
        return op(x)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, out_c: int,
             pre: tuple[torch.Tensor, ...]) -> torch.Tensor:
        ops = list(self.candidates.values())
        if self.hard:
            index = int(weights.argmax())
            if self.zero[index]:
                return self._zeros(x, out_c) * weights[index]
            return weights[index] * self._output(index, ops[index], x, pre)
        total: torch.Tensor | None = None
        for index, op in enumerate(ops):
            if self.zero[index]:
                continue
            term = weights[index] * self._output(index, op, x, pre)
            total = term if total is None else total + term
        return self._zeros(x, out_c) if total is None else total

    def _zeros(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        _, h, w = self.out_shape
        return x.new_zeros((x.shape[0], channels, h, w))

    def _forward(self, x: torch.Tensor, weights: torch.Tensor, *pre: torch.Tensor) -> torch.Tensor:
        if self.partial == 1:
            return self._mix(x, weights, self.out_shape[0], pre)
        part = x.shape[1] // self.partial
        mixed = self._mix(x[:, :part], weights, part, pre)
        rest = x[:, part:]
        if self.stride == 2:
            rest = F.max_pool2d(rest, 2, 2)
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.partial)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, *pre: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and not self.hard:
            return checkpoint(self._forward, x, weights, *pre, use_reentrant=False,
                              context_fn=lambda: (nullcontext(), frozen_bn_stats(self)))
        return self._forward(x, weights, *pre)


def sum_inputs(*tensors: torch.Tensor) -> torch.Tensor:
    """The `sum` of a node's inputs (a named function so generated code reads naturally)."""
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total
