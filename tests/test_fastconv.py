"""The fast backward paths of `dasc.runtime.fastconv` against the plain torch modules they replace."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from dasc.runtime.fastconv import DepthwiseConv2d, _DilatedDepthwise, _PointwiseBN, pointwise_bn
from dasc.runtime.layers import DilConv

CL = torch.channels_last


def _grads(module: nn.Module, x: torch.Tensor, g: torch.Tensor | None = None):
    x = x.detach().clone().requires_grad_(True)
    y = module(x)
    g = torch.randn_like(y) if g is None else g
    params = [p for p in module.parameters()]
    return y, g, torch.autograd.grad(y, [x, *params], g)


def _assert_same_as_conv(m: DepthwiseConv2d, x: torch.Tensor) -> None:
    ref = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                    m.dilation, m.groups, bias=False).double()
    ref.load_state_dict(m.state_dict())
    y, g, grads = _grads(m, x)
    y_ref, _, grads_ref = _grads(ref, x, g)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2),
                                               (3, 1, 3), (3, 1, 1), (5, 2, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_conv_matches_nn_conv2d(k, stride, dilation, channels_last):
    torch.manual_seed(0)
    m = DepthwiseConv2d(4, k, stride, dilation * (k - 1) // 2, dilation).double()
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64)
    _assert_same_as_conv(m, x.contiguous(memory_format=CL) if channels_last else x)


def test_the_fast_paths_are_the_ones_taken():
    assert DepthwiseConv2d(4, 3, 1, 2, 2)._flip_path
    assert DepthwiseConv2d(4, 5, 2, 4, 2)._subsample_path
    plain = DepthwiseConv2d(4, 3, 1, 1, 1)
    assert not plain._flip_path and not plain._subsample_path
    not_same = DepthwiseConv2d(4, 3, 1, 1, 2)  # padding 1 with dilation 2 shrinks the map
    assert not not_same._flip_path and not not_same._subsample_path


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 5), k=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]),
       dilation=st.integers(1, 3), h=st.integers(5, 12), w=st.integers(5, 12),
       channels_last=st.booleans())
def test_depthwise_conv_matches_for_any_geometry(c, k, stride, dilation, h, w, channels_last):
    torch.manual_seed(c * 100 + h)
    m = DepthwiseConv2d(c, k, stride, dilation * (k - 1) // 2, dilation).double()
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    _assert_same_as_conv(m, x.contiguous(memory_format=CL) if channels_last else x)


def test_dilated_function_has_correct_first_and_second_derivatives():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    f = lambda x, w: _DilatedDepthwise.apply(x, w, 2, 2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w))


@pytest.mark.parametrize("affine", [True, False])
def test_pointwise_bn_matches_conv_then_bn_including_running_stats(affine):
    torch.manual_seed(2)
    conv, bn = nn.Conv2d(3, 4, 1, bias=False).double(), nn.BatchNorm2d(4, affine=affine).double()
    if affine:
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.normal_(bn.bias)
    conv_ref, bn_ref = copy.deepcopy(conv), copy.deepcopy(bn)
    for _ in range(2):  # twice: running statistics accumulate the same way
        x = torch.randn(5, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=CL)
        x.requires_grad_(True)
        y = pointwise_bn(conv, bn, x)
        g = torch.randn_like(y)
        params = [x, conv.weight] + ([bn.weight, bn.bias] if affine else [])
        grads = torch.autograd.grad(y, params, g)
        x_ref = x.detach().clone().requires_grad_(True)
        y_ref = bn_ref(conv_ref(x_ref))
        params_ref = [x_ref, conv_ref.weight] + ([bn_ref.weight, bn_ref.bias] if affine else [])
        grads_ref = torch.autograd.grad(y_ref, params_ref, g)
        torch.testing.assert_close(y, y_ref)
        for a, b in zip(grads, grads_ref):
            torch.testing.assert_close(a, b)
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var)
    assert int(bn.num_batches_tracked) == int(bn_ref.num_batches_tracked) == 2


def test_pointwise_bn_function_has_correct_first_and_second_derivatives():
    torch.manual_seed(3)
    args = [torch.randn(4, 3, 3, 3, dtype=torch.float64), torch.randn(2, 3, 1, 1, dtype=torch.float64),
            torch.rand(2, dtype=torch.float64) + 0.5, torch.randn(2, dtype=torch.float64)]
    args = [a.requires_grad_(True) for a in args]
    f = lambda x, w, g, b: _PointwiseBN.apply(x, w, g, b, None, None, 0.1, 1e-5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_pointwise_bn_keeps_the_conv_input_not_its_output():
    """The point of the pair: the 1x1 conv's output (BN's input) is not held for backward."""
    conv, bn = nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    saved: list[torch.Size] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        pointwise_bn(conv, bn, x)
    assert torch.Size([2, 8, 5, 5]) not in saved and torch.Size([2, 4, 5, 5]) in saved


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_plain_paths_outside_training():
    """Eval-mode BN, no_grad and ONNX-style tracing use the ordinary modules."""
    conv, bn = nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4).eval()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    torch.testing.assert_close(pointwise_bn(conv, bn, x), bn(conv(x)))
    with torch.no_grad():
        bn.train()
        before = int(bn.num_batches_tracked)
        pointwise_bn(conv, bn, x)
        assert int(bn.num_batches_tracked) == before + 1  # nn.BatchNorm2d's own bookkeeping
    op = DilConv(3, 3, 3, 1, 2, 2).eval()
    traced = torch.jit.trace(op, torch.randn(1, 3, 8, 8))
    assert "_convolution" in str(traced.inlined_graph)
    assert "PythonOp" not in str(traced.inlined_graph)


def test_pointwise_bn_leaves_a_batch_norm_subclass_its_own_forward():
    calls = []

    class Counting(nn.BatchNorm2d):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    pointwise_bn(nn.Conv2d(3, 4, 1, bias=False), Counting(4), torch.randn(2, 3, 4, 4, requires_grad=True))
    assert calls == [torch.Size([2, 4, 4, 4])]


def test_dil_conv_keeps_the_reference_state_dict_keys():
    keys = list(DilConv(4, 6, 3, 2, 2, 2).state_dict())
    assert keys[:2] == ["op.1.weight", "op.2.weight"] and "op.3.running_mean" in keys
