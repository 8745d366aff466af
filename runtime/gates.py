"""Gates turn architecture parameters α into mixing weights, and schedules anneal their temperature.

A gate is a module (not a function) so that its temperature lives in the state dict: a resumed
search continues with exactly the temperature it stopped at, and `dasc search` can anneal it by
writing one buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GATE_KINDS = ("softmax", "sigmoid", "gumbel", "gumbel_hard")
SCHEDULES = ("constant", "linear", "exponential", "cosine")


def alpha_size(kind: str, n_candidates: int) -> int:
    """Number of α entries for a choice: one per candidate, except the seed's binary sigmoid.

    With exactly two candidates a sigmoid gate uses one α and mixes σ(α/τ) and 1 − σ(α/τ), as in
    the seed article's pooling example; with more candidates every candidate has its own
    independent gate σ(α_i/τ).
    """
    if kind == "sigmoid" and n_candidates == 2:
        return 1
    return n_candidates


class Gate(nn.Module):
    """Maps an α vector to candidate weights; the temperature τ is a buffer.

    Gumbel gates sample in training mode (soft, or hard one-hot with a straight-through
    gradient as in GDAS); in eval mode they return the deterministic softmax (soft) or the
    argmax one-hot (hard), so validation numbers do not depend on the noise.
    """

    def __init__(self, kind: str = "softmax", tau: float = 1.0) -> None:
        super().__init__()
        if kind not in GATE_KINDS:
            raise ValueError(f"unknown gate kind {kind!r}")
        self.kind = kind
        self.register_buffer("tau", torch.tensor(float(tau)))

    def forward(self, alpha: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """`key` names the α (unused here; `FixedGate` uses it to pin an architecture)."""
        tau = self.tau
        if self.kind == "softmax":
            return F.softmax(alpha / tau, dim=-1)
        if self.kind == "sigmoid":
            gate = torch.sigmoid(alpha / tau)
            if alpha.numel() == 1:
                return torch.cat([gate, 1 - gate])
            return gate
        hard = self.kind == "gumbel_hard"
        if self.training:
            return F.gumbel_softmax(alpha, tau=float(tau), hard=hard, dim=-1)
        soft = F.softmax(alpha / tau, dim=-1)
        if hard:
            return F.one_hot(soft.argmax(-1), soft.numel()).to(soft.dtype)
        return soft

    def extra_repr(self) -> str:
        return f"kind={self.kind}, tau={float(self.tau):.4g}"


@dataclass(frozen=True)
class Schedule:
    """Temperature from `start` to `end` over the search, by `kind` (see SCHEDULES)."""

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}")
        if self.start <= 0 or self.end <= 0:
            raise ValueError("temperatures must be positive")

    def at(self, progress: float) -> float:
        """τ at `progress` in [0, 1] (fraction of the search done)."""
        p = min(1.0, max(0.0, progress))
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * p
        if self.kind == "exponential":
            return self.start * (self.end / self.start) ** p
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * p))


class FixedGate(nn.Module):
    """Returns pinned weights per α key: evaluates a super-network as one discrete architecture.

    Swapped in for `Gate` to measure the derived network with inherited weights (the
    discretization gap) without building a second model.
    """

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.pinned = {k: v.detach().clone() for k, v in weights.items()}

    def forward(self, alpha: torch.Tensor, key: str | None = None) -> torch.Tensor:
        return self.pinned[key].to(alpha.device, alpha.dtype)
