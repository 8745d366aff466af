"""Faster CPU backward passes for the two layer patterns that dominate a DARTS super-network step.

Profiling `bench/supernet_step.py` (C=8, 5 cells, batch 32, one CPU thread) showed half of a
step in `convolution_backward`, and most of that in *dilated* depthwise convolutions: oneDNN has
no fast kernel for their gradients (5-30 ms a call, against 0.2 ms for the forward pass). Both
gradients can be computed with fast forward convolutions instead:

* the input gradient of a stride-1 "same"-padded convolution is the convolution of the output
  gradient with the spatially flipped kernel (same dilation and padding);
* the weight gradient of a depthwise convolution is, per (image, channel), the correlation of
  the padded input with the output gradient: one depthwise *forward* convolution over N·C
  groups whose kernels are the output gradients, summed over the batch;
* a stride-2, dilation-2 convolution with "same" padding only reads even rows and columns, so
  it equals a plain convolution of `x[:, :, ::2, ::2]`, whose backward oneDNN does quickly.

The second pattern is a 1×1 convolution followed by training-mode BatchNorm. Keeping only the
convolution's input for the backward pass and recomputing its output there saves the largest
activation of a separable conv; done with one autograd Function (recompute the cheap 1×1 conv,
then BN's and the conv's own backward kernels with the statistics saved in the forward pass)
it costs a fraction of `torch.utils.checkpoint`, which replays BN's forward too.

Every fast path is exact up to float rounding and is used only where an autograd graph is being
recorded; tracing, ONNX export and inference run the plain modules. A second derivative
(`create_graph=True`, the exact hypergradient of the tests) recomputes through ordinary
differentiable ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_aten = torch.ops.aten


def _recording(*tensors: torch.Tensor) -> bool:
    """True in an ordinary autograd forward pass (not under tracing or export)."""
    if not all(isinstance(t, torch.Tensor) for t in tensors):  # an fx Proxy, say
        return False
    if not torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return tensors[0].device.type == "cpu" and any(t.requires_grad for t in tensors)


class _DilatedDepthwise(torch.autograd.Function):
    """A stride-1, same-padded, dilated depthwise convolution with forward-conv gradients."""

    @staticmethod
    def forward(x, weight, padding: int, dilation: int):
        return F.conv2d(x, weight, None, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, padding, dilation = inputs
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p, d = ctx.padding, ctx.dilation
        channels = weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(-2, -1), None, 1, p, d, channels)
        if ctx.needs_input_grad[1]:
            n, c, h, w = x.shape
            kh, kw = weight.shape[-2:]
            per_image = F.conv2d(x.contiguous().view(1, n * c, h, w),
                                 grad.contiguous().view(n * c, 1, *grad.shape[-2:]),
                                 None, d, p, 1, n * c)
            grad_w = per_image.view(n, c, kh, kw).sum(0).unsqueeze(1)
        return grad_x, grad_w, None, None


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(c, c, k, groups=c)` (same parameters and state_dict keys) with fast gradients
    for dilated kernels on the CPU."""

    def __init__(self, channels: int, k: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(channels, channels, k, stride=stride, padding=padding,
                         dilation=dilation, groups=channels, bias=False)
        kh, kw = self.kernel_size
        same = all(p * 2 == dilation * (k_ - 1) for p, k_ in zip(self.padding, (kh, kw)))
        plain = self.padding_mode == "zeros" and kh == kw and kh % 2 == 1
        self._flip_path = plain and same and stride == 1 and dilation > 1
        self._subsample_path = plain and same and stride == dilation and dilation > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _recording(x, self.weight):
            if self._flip_path:
                return _DilatedDepthwise.apply(x, self.weight, self.padding[0], self.dilation[0])
            if self._subsample_path:
                s = self.stride[0]
                return F.conv2d(x[:, :, ::s, ::s], self.weight, None, 1,
                                (self.kernel_size[0] - 1) // 2, 1, self.groups)
        return super().forward(x)


class _PointwiseBN(torch.autograd.Function):
    """BN(conv1x1(x)) in training mode, keeping x (not the conv output) for the backward pass."""

    @staticmethod
    def forward(x, conv_w, gamma, beta, running_mean, running_var, momentum: float, eps: float):
        z = F.conv2d(x, conv_w)
        out, mean, invstd = _aten.native_batch_norm(z, gamma, beta, running_mean, running_var,
                                                    True, momentum, eps)
        return out, mean, invstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, conv_w, gamma, beta, _, _, _, eps = inputs
        _, mean, invstd = output
        ctx.save_for_backward(x, conv_w, gamma, beta, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_invstd):
        x, conv_w, gamma, beta, mean, invstd = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: recompute differentiably (tests only)
            return _differentiable_backward(ctx, grad, x, conv_w, gamma, beta)
        z = F.conv2d(x, conv_w)
        grad_z, grad_gamma, grad_beta = _aten.native_batch_norm_backward(
            grad, z, gamma, None, None, mean, invstd, True, ctx.eps,
            [needs[0] or needs[1], gamma is not None and needs[2], beta is not None and needs[3]])
        grad_x = grad_w = None
        if needs[0] or needs[1]:
            grad_x, grad_w, _ = _aten.convolution_backward(
                grad_z, x, conv_w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [needs[0], needs[1], False])
        return grad_x, grad_w, grad_gamma, grad_beta, None, None, None, None


def _differentiable_backward(ctx, grad, x, conv_w, gamma, beta):
    wanted = [t for t, need in zip((x, conv_w, gamma, beta), ctx.needs_input_grad[:4]) if need]
    with torch.enable_grad():
        z = F.conv2d(x, conv_w)
        out = F.batch_norm(z, None, None, gamma, beta, True, 0.0, ctx.eps)
        grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad[:4]) + (None,) * 4


def pointwise_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """`bn(conv(x))` for a bias-free 1×1 conv; the memory-saving path in training mode."""
    # a subclass (the data-parallel GlobalBatchNorm2d) has statistics of its own to compute
    fits = (type(bn) is nn.BatchNorm2d and bn.training and bn.track_running_stats and bn.momentum is not None
            and conv.bias is None and conv.stride == (1, 1) and conv.groups == 1
            and conv.padding == (0, 0) and conv.kernel_size == (1, 1))
    params = [conv.weight] + ([bn.weight, bn.bias] if bn.affine else [])
    if not (fits and _recording(x, *params)):
        return bn(conv(x))
    bn.num_batches_tracked.add_(1)
    out, _, _ = _PointwiseBN.apply(x, conv.weight, bn.weight, bn.bias, bn.running_mean,
                                   bn.running_var, bn.momentum, bn.eps)
    return out
