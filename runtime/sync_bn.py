"""`--sync-bn`: batch norm over the global batch of a data-parallel run, on CPU (gloo) too.

With N ranks each BN layer in training mode normalises with the statistics of its own shard
(B/N examples), which is what makes a data-parallel run differ from the single process at batch
B. `torch.nn.SyncBatchNorm` fixes that on GPUs only: in torch 2.13 its forward raises
"SyncBatchNorm expected input tensor to be on GPU" for CPU tensors. So dasc has its own: per
channel sum and sum of squares (in float64, so E[x²] − E[x]² does not cancel badly) and the
example count go through one all-reduce, differentiable (its backward all-reduces the
gradient, weighted by the rank's share of the batch), so autograd gives the exact gradient of
the global-batch normalisation. One code path for gloo and NCCL, tested on gloo.

Modules are converted by changing their class in place: parameters, buffers and state-dict keys
stay the same objects, so optimizers built earlier and checkpoints are unaffected, and a
converted model still passes `isinstance(m, nn.BatchNorm2d)`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """Σ over ranks of per-channel sums; backward hands each rank its share-weighted part.

    The search and training combine rank gradients as Σ_r s_r g_r, s_r = n_r / n (a rank's
    share of the global batch). A plain all-reduce's backward sums the upstream gradients
    unweighted, which after that weighting is only right when all shares are equal; scaling
    by the share on the way in and unscaling on the way out makes it right for any split.
    The last entry of the packed tensor is the example count, so the share needs no plumbing.
    """

    @staticmethod
    def forward(ctx, packed: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = packed.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        ctx.share = float(packed[-1]) / float(total[-1])
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous() * ctx.share
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad / ctx.share


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the whole global batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device)
        packed = torch.cat([x.sum(dims, dtype=torch.float64),
                            (x * x).sum(dims, dtype=torch.float64), count])
        packed = _SumOverRanks.apply(packed)
        n = packed[-1].detach()
        mean = packed[:c] / n
        var = (packed[c:2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as BN normalises
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), float(n))
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """Exactly what BatchNorm2d does with its running buffers, at the global batch."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = float(self.momentum)
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
        self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))


def convert(model: nn.Module) -> int:
    """Make every plain BatchNorm2d of `model` a GlobalBatchNorm2d; returns how many."""
    count = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
            count += 1
    return count


def revert(model: nn.Module) -> None:
    """Back to plain BatchNorm2d (after the search: recalibration and evaluation run the same
    full data on every rank, so there is nothing to synchronise and nothing to wait for)."""
    for m in model.modules():
        if type(m) is GlobalBatchNorm2d:
            m.__class__ = nn.BatchNorm2d
