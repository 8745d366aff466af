"""Every op's shape and cost rules against the torch module its `build` returns.

The MAC counter here is independent of the cost rules: forward hooks on every Conv2d and
Linear of the built module, counting (in_channels/groups)*kh*kw multiply-accumulates per output
element of a conv and in*out per sample of a linear layer (the DARTS/NAS-Bench-201 convention).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dasc.ops import REGISTRY, Shape, infer_shape, resolve_args  # noqa: E402
from dasc.runtime import layers  # noqa: E402

BATCH = 2

# (op, input shapes, args): a spread of channel counts, odd sizes, strides, groups, flags.
CASES = [
    ("conv", [Shape(3, 32, 32)], {"c": 16}),
    ("conv", [Shape(3, 9, 11)], {"c": 8, "k": 5, "stride": 2}),
    ("conv", [Shape(8, 7, 7)], {"c": 4, "k": 3, "groups": 2, "bias": 1, "dilation": 2}),
    ("conv", [Shape(6, 5, 5)], {"k": 1, "groups": 6, "stride": 3}),
    ("conv", [Shape(4, 6, 6)], {"c": 4, "k": 2}),
    ("bn", [Shape(5, 4, 4)], {}),
    ("bn", [Shape(5, 4, 4)], {"affine": 0}),
    ("relu", [Shape(5, 4, 3)], {}),
    ("relu6", [Shape(5, 4, 3)], {}),
    ("identity", [Shape(5, 4, 3)], {}),
    ("gap", [Shape(7, 5, 3)], {}),
    ("linear", [Shape(7, 1, 1)], {"n": 10}),
    ("linear", [Shape(3, 2, 4)], {"n": 5, "bias": 0}),
    ("max_pool", [Shape(4, 9, 9)], {"k": 2, "stride": 2}),
    ("max_pool", [Shape(4, 9, 8)], {}),
    ("avg_pool", [Shape(4, 8, 8)], {"k": 2, "stride": 2}),
    ("avg_pool", [Shape(4, 7, 9)], {"k": 5, "stride": 3}),
    ("adapter", [Shape(4, 6, 6)], {"c": 12}),
    ("sum", [Shape(4, 6, 6)] * 3, {}),
    ("concat", [Shape(4, 6, 6), Shape(2, 6, 6), Shape(7, 6, 6)], {}),
    ("none", [Shape(6, 8, 8)], {}),
    ("none", [Shape(6, 7, 9)], {"stride": 2}),
    ("skip_connect", [Shape(6, 8, 8)], {}),
    ("skip_connect", [Shape(6, 8, 10)], {"stride": 2}),
    ("skip_connect", [Shape(6, 8, 8)], {"stride": 2, "affine": 0}),
    ("max_pool_3x3", [Shape(6, 7, 7)], {"stride": 2}),
    ("avg_pool_3x3", [Shape(6, 8, 8)], {}),
    ("avg_pool_3x3", [Shape(6, 7, 8)], {"stride": 2}),
    ("sep_conv_3x3", [Shape(8, 8, 8)], {}),
    ("sep_conv_3x3", [Shape(8, 9, 9)], {"stride": 2, "c": 12}),
    ("sep_conv_5x5", [Shape(6, 8, 8)], {"stride": 2}),
    ("sep_conv_5x5", [Shape(6, 5, 5)], {"affine": 0}),
    ("dil_conv_3x3", [Shape(8, 8, 8)], {}),
    ("dil_conv_3x3", [Shape(8, 7, 7)], {"stride": 2, "c": 4}),
    ("dil_conv_5x5", [Shape(6, 8, 8)], {"stride": 2}),
    ("dil_conv_5x5", [Shape(6, 3, 3)], {}),
    ("fact_reduce", [Shape(6, 8, 8)], {"c": 10}),
    ("fact_reduce", [Shape(5, 4, 6)], {"c": 4, "affine": 0}),
    ("relu_conv_bn", [Shape(6, 8, 8)], {"c": 10}),
    ("relu_conv_bn", [Shape(6, 9, 9)], {"c": 4, "k": 3, "stride": 2, "dilation": 2}),
    ("nor_conv_1x1", [Shape(16, 8, 8)], {}),
    ("nor_conv_3x3", [Shape(16, 8, 8)], {}),
    ("nor_conv_3x3", [Shape(16, 9, 9)], {"stride": 2, "c": 32}),
    ("mbconv", [Shape(16, 8, 8)], {}),
    ("mbconv", [Shape(16, 9, 9)], {"c": 24, "k": 5, "e": 3, "stride": 2}),
    ("mbconv", [Shape(16, 8, 8)], {"c": 8, "k": 7, "e": 1}),
    ("mbconv", [Shape(8, 8, 8)], {"c": 8, "k": 3, "e": 1}),
]


def count_macs(module: nn.Module, inputs) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one sample, measured by hooks."""
    total = 0

    def conv_hook(m, args, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m, args, out):
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def _case_id(case):
    name, shapes, args = case
    return name + "-" + "-".join(f"{k}{v}" for k, v in args.items()) + "-" + str(shapes[0].h)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_rules_match_built_module(case):
    name, shapes, given = case
    spec = REGISTRY.get(name)
    args = resolve_args(spec, given)
    out_shape = infer_shape(spec, tuple(shapes), given)
    module = spec.build(tuple(shapes), args)
    module.eval()
    torch.manual_seed(0)
    inputs = [torch.randn(BATCH, s.c, s.h, s.w) for s in shapes]
    with torch.no_grad():
        y = module(*inputs)
    assert tuple(y.shape) == (BATCH, out_shape.c, out_shape.h, out_shape.w)
    assert spec.params_count(tuple(shapes), args) == sum(p.numel() for p in module.parameters())
    assert spec.macs(tuple(shapes), args) == count_macs(module, inputs)


def test_every_op_has_a_case():
    assert {c[0] for c in CASES} == set(REGISTRY.names())


def test_module_semantics():
    x = torch.randn(2, 4, 7, 7)
    assert torch.equal(layers.Zero(2)(x), torch.zeros(2, 4, 4, 4))
    assert layers.Identity()(x) is x
    assert torch.equal(layers.Sum()(x, x, x), 3 * x)
    pool = REGISTRY.get("avg_pool_3x3").build((Shape(4, 7, 7),), {"stride": 1})
    assert pool.count_include_pad is False and pool.padding == 1
    ones = torch.ones(1, 1, 3, 3)
    assert torch.allclose(pool(ones), ones)  # padding excluded from the mean
    block = layers.MBConv(4, 4, 3, 6, 1)
    assert block.residual and not layers.MBConv(4, 4, 3, 6, 2).residual
    assert layers.MBConv(4, 8, 3, 1, 1).expand is None


def test_darts_module_layout_matches_reference():
    """Same submodule names and parameter shapes as quark0/darts, so checkpoints line up."""
    sep = REGISTRY.get("sep_conv_3x3").build((Shape(16, 8, 8),), {"stride": 1, "affine": 1})
    assert [(k, tuple(v.shape)) for k, v in sep.state_dict().items() if "running" not in k
            and "num_batches" not in k] == [
        ("op.1.weight", (16, 1, 3, 3)), ("op.2.weight", (16, 16, 1, 1)),
        ("op.3.weight", (16,)), ("op.3.bias", (16,)),
        ("op.5.weight", (16, 1, 3, 3)), ("op.6.weight", (16, 16, 1, 1)),
        ("op.7.weight", (16,)), ("op.7.bias", (16,))]
    dil = REGISTRY.get("dil_conv_5x5").build((Shape(16, 8, 8),), {"stride": 2, "affine": 1})
    conv = dil.op[1]
    assert conv.dilation == (2, 2) and conv.padding == (4, 4) and conv.groups == 16
    fr = REGISTRY.get("skip_connect").build((Shape(16, 8, 8),), {"stride": 2, "affine": 1})
    assert isinstance(fr, layers.FactorizedReduce)
    assert {k for k in fr.state_dict() if "weight" in k} == {
        "conv_1.weight", "conv_2.weight", "bn.weight"}


def test_builders_are_fx_traceable():
    fx = pytest.importorskip("torch.fx")
    for name, shapes, given in CASES:
        if REGISTRY.get(name).arity < 0:
            continue
        spec = REGISTRY.get(name)
        # Wrapped so that torch.nn layers are leaves, as they are inside a lowered network.
        module = nn.Sequential(spec.build(tuple(shapes), resolve_args(spec, given))).eval()
        traced = fx.symbolic_trace(module)
        x = torch.randn(1, shapes[0].c, shapes[0].h, shapes[0].w)
        with torch.no_grad():
            assert torch.equal(traced(x), module(x)), name


@pytest.mark.parametrize("name, shape, given", [
    ("skip_connect", Shape(6, 8, 8), {"stride": 2}), ("none", Shape(6, 7, 7), {"stride": 2}),
    ("linear", Shape(6, 2, 2), {"n": 3}), ("avg_pool_3x3", Shape(6, 7, 7), {"stride": 2}),
    ("mbconv", Shape(8, 8, 8), {}), ("dil_conv_5x5", Shape(6, 8, 8), {"stride": 2}),
])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter; no onnxscript
def test_modules_export_to_onnx(name, shape, given, tmp_path):
    """The exporter relies on these modules mapping to standard ONNX operators."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec = REGISTRY.get(name)
    module = spec.build((shape,), resolve_args(spec, given)).eval()
    x = torch.randn(2, shape.c, shape.h, shape.w)
    path = tmp_path / "m.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["x"])
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    (y,) = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(y), module(x), atol=1e-5)
