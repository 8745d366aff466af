"""The reference oracles in tests/reference agree with arithmetic done by hand from the papers.

Why: tests/reference is what dasc's derived networks are checked against, so it must itself be
checked by something independent of torch module construction. Here every parameter and MAC is
re-derived as plain integer sums from the op definitions (DARTS App. A / NAS-Bench-201 Sec. 2.1),
and the published figures (docs/reference-figures.md) are pinned as literals: a change to any of
the three — formulas, modules, documented numbers — fails a test.
"""
import sys
from pathlib import Path

import pytest

try:
    from tests.reference import GENOTYPE_DIR
except ImportError:  # pytest started from elsewhere: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.reference import GENOTYPE_DIR
from tests.reference.darts_eval import (Genotype, build_darts_network, format_genotype,
                                        load_genotype_file, parse_genotype)
from tests.reference.macs import count_macs, count_params, macs_by_module
from tests.reference.nb201 import build_nb201_network, format_nb201, parse_nb201

# ---- figures as documented in docs/reference-figures.md (C=36, 20 layers, 10 classes, 32x32) ----
DARTS_FIGURES = {  # name: (params without auxiliary head, MACs)
    "DARTS_V1": (3_169_414, 500_987_520),
    "DARTS_V2": (3_349_342, 528_359_040),
    "PC_DARTS": (3_634_678, 556_670_592),
}
NB201_FIGURES = {  # file: (params, MACs) at C=16, N=5, 10 classes, 32x32
    "nb201_all_skip": (73_306, 7_783_040),
    "nb201_all_conv3x3": (1_531_546, 220_119_680),
    "nb201_mixed": (802_426, 113_951_360),
    "nb201_best": (1_288_506, 184_730_240),
    "nb201_all_ops": (129_306, 15_647_360),
}
DARTS_V2_AUX_HEAD_PARAMS = 476_426


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions gain nothing from threads and suffer badly on a shared, busy CPU."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# =============================== DARTS: arithmetic by hand ===============================
def bn(c):  # affine BatchNorm: a scale and a shift per channel
    return 2 * c


def op_params(op, C, stride):
    """Parameters of one DARTS op at C channels (convs have no bias)."""
    if op in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0
    if op == "skip_connect":  # identity, or FactorizedReduce(C, C) on a stride-2 edge
        return 0 if stride == 1 else 2 * (C * (C // 2)) + bn(C)
    k = int(op[-1])
    depthwise, pointwise = C * k * k, C * C
    if op.startswith("sep_conv"):  # the separable conv is applied twice
        return 2 * (depthwise + pointwise + bn(C))
    if op.startswith("dil_conv"):
        return depthwise + pointwise + bn(C)
    raise ValueError(op)


def op_macs(op, C, stride, h_out):
    """MACs of one DARTS op whose output is h_out × h_out (dilation adds none)."""
    hw = h_out * h_out
    if op in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0
    if op == "skip_connect":
        return 0 if stride == 1 else 2 * C * (C // 2) * hw
    k = int(op[-1])
    once = (C * k * k + C * C) * hw
    return 2 * once if op.startswith("sep_conv") else once


def darts_cell(genotype, reduction, c_pp, c_p, C, h_pp, h_p):
    """(params, MACs) of one evaluation cell; h_pp / h_p are the input resolutions."""
    if h_pp == 2 * h_p:  # previous cell reduced: s0 goes through FactorizedReduce(c_pp, C)
        pre0 = (2 * c_pp * (C // 2) + bn(C), 2 * c_pp * (C // 2) * h_p * h_p)
    else:  # ReLU-conv1x1-BN
        pre0 = (c_pp * C + bn(C), c_pp * C * h_pp * h_pp)
    pre1 = (c_p * C + bn(C), c_p * C * h_p * h_p)
    edges = genotype.reduce if reduction else genotype.normal
    params = pre0[0] + pre1[0]
    macs = pre0[1] + pre1[1]
    for op, src in edges:
        stride = 2 if reduction and src < 2 else 1
        h_out = h_p // 2 if reduction else h_p
        params += op_params(op, C, stride)
        macs += op_macs(op, C, stride, h_out)
    return params, macs


def darts_network(genotype, C=36, layers=20, classes=10, h=32):
    """(params, MACs): stem, the cells stage by stage, then GAP + linear."""
    c_stem = 3 * C
    params = 3 * c_stem * 3 * 3 + bn(c_stem)
    macs = 3 * c_stem * 3 * 3 * h * h
    c_pp, c_p, c, h_pp, h_p = c_stem, c_stem, C, h, h
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c *= 2
        p, m = darts_cell(genotype, reduction, c_pp, c_p, c, h_pp, h_p)
        params, macs = params + p, macs + m
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        c_pp, c_p = c_p, len(concat) * c
        h_pp, h_p = h_p, (h_p // 2 if reduction else h_p)
    return params + c_p * classes + classes, macs + c_p * classes


def test_darts_v2_spelled_out():
    """DARTS_V2 at C=36 / 20 layers written as one literal sum, cell group by cell group.

    Normal cell at C: 5 sep_conv_3x3 + 1 dil_conv_3x3 + 2 identity skips. Reduction cell: 5
    max-pools + 3 skips, all three reading node 2 (stride 1: identity) -> no op parameters.
    Channels (c_pp, c_p -> C): stem 108; cell0 (108,108->36), cell1 (108,144->36), cells 2-5
    (144,144->36), cell6 = reduce (144,144->72), cell7 (144 via FactorizedReduce, 288->72),
    cells 8-12 (288,288->72), cell13 = reduce (288,288->144), cell14 (288 FR, 576->144),
    cells 15-19 (576,576->144); classifier 576->10.
    """
    def sep3(C): return 2 * (C * 9 + C * C + 2 * C)
    def dil3(C): return C * 9 + C * C + 2 * C
    def rcb(ci, co): return ci * co + 2 * co           # ReLU-conv1x1-BN
    def fr(ci, co): return 2 * ci * (co // 2) + 2 * co  # FactorizedReduce
    def normal_ops(C): return 5 * sep3(C) + dil3(C)

    stem = 3 * 108 * 9 + 2 * 108
    stage1 = (rcb(108, 36) + rcb(108, 36) + normal_ops(36)
              + rcb(108, 36) + rcb(144, 36) + normal_ops(36)
              + 4 * (rcb(144, 36) + rcb(144, 36) + normal_ops(36)))
    reduce1 = rcb(144, 72) + rcb(144, 72)
    stage2 = (fr(144, 72) + rcb(288, 72) + normal_ops(72)
              + 5 * (rcb(288, 72) + rcb(288, 72) + normal_ops(72)))
    reduce2 = rcb(288, 144) + rcb(288, 144)
    stage3 = (fr(288, 144) + rcb(576, 144) + normal_ops(144)
              + 5 * (rcb(576, 144) + rcb(576, 144) + normal_ops(144)))
    head = 576 * 10 + 10
    total = stem + stage1 + reduce1 + stage2 + reduce2 + stage3 + head
    assert total == DARTS_FIGURES["DARTS_V2"][0] == 3_349_342
    g = load_genotype_file(GENOTYPE_DIR / "DARTS_V2.txt")
    assert darts_network(g)[0] == total


@pytest.mark.parametrize("name", sorted(DARTS_FIGURES))
def test_darts_params_and_macs_agree(name):
    g = load_genotype_file(GENOTYPE_DIR / f"{name}.txt")
    by_hand = darts_network(g)
    net = build_darts_network(g, C=36, layers=20, classes=10)
    counted = (count_params(net), count_macs(net, (3, 32, 32)))
    assert by_hand == counted == DARTS_FIGURES[name]


def test_darts_v2_auxiliary_head_is_excluded():
    g = load_genotype_file(GENOTYPE_DIR / "DARTS_V2.txt")
    net = build_darts_network(g, auxiliary=True)
    aux = 576 * 128 + bn(128) + 128 * 768 * 2 * 2 + bn(768) + 768 * 10 + 10
    assert aux == DARTS_V2_AUX_HEAD_PARAMS
    assert count_params(net) == DARTS_FIGURES["DARTS_V2"][0]
    assert sum(p.numel() for p in net.parameters()) == DARTS_FIGURES["DARTS_V2"][0] + aux


def test_darts_small_config_and_shapes():
    """Other sizes follow the same arithmetic; training-mode forward yields aux logits."""
    import torch
    g = load_genotype_file(GENOTYPE_DIR / "PC_DARTS.txt")
    net = build_darts_network(g, C=8, layers=5, classes=7, auxiliary=True)
    assert darts_network(g, C=8, layers=5, classes=7) == (count_params(net), count_macs(net))
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 7)


# ============================ NAS-Bench-201: arithmetic by hand ============================
def nb201_op(op, C, h):
    """(params, MACs) of one NB201 cell edge at C channels, h × h, stride 1."""
    if op == "nor_conv_3x3":
        return C * C * 9 + bn(C), C * C * 9 * h * h
    if op == "nor_conv_1x1":
        return C * C + bn(C), C * C * h * h
    return 0, 0  # skip_connect, avg_pool_3x3, none


def nb201_network(arch, C=16, N=5, classes=10, h=32):
    ops = [op for node in parse_nb201(arch) for op, _ in node]
    params, macs = 3 * C * 9 + bn(C), 3 * C * 9 * h * h  # stem
    for stage in range(3):
        c = C << stage
        if stage:  # ResNet block c/2 -> c, stride 2: conv_a, conv_b, shortcut avgpool + conv1x1
            ci = c // 2
            h //= 2
            params += ci * c * 9 + bn(c) + c * c * 9 + bn(c) + ci * c
            macs += (ci * c * 9 + c * c * 9 + ci * c) * h * h
        for _ in range(N):
            for op in ops:
                p, m = nb201_op(op, c, h)
                params, macs = params + p, macs + m
    c = C * 4
    return params + bn(c) + c * classes + classes, macs + c * classes  # lastact BN, linear


@pytest.mark.parametrize("name", sorted(NB201_FIGURES))
def test_nb201_params_and_macs_agree(name):
    arch = (GENOTYPE_DIR / f"{name}.txt").read_text()
    net = build_nb201_network(arch)
    assert nb201_network(arch) == (count_params(net), count_macs(net)) == NB201_FIGURES[name]


def test_nb201_extremes_match_the_benchmark_range():
    """NAS-Bench-201's CIFAR-10 architectures span about 0.07M to 1.53M parameters: the all-skip
    cell (only the fixed skeleton has weights) and the all-nor_conv_3x3 cell are the extremes."""
    lo = NB201_FIGURES["nb201_all_skip"]
    hi = NB201_FIGURES["nb201_all_conv3x3"]
    assert round(lo[0] / 1e6, 2) == 0.07 and round(hi[0] / 1e6, 2) == 1.53
    assert lo[0] <= min(p for p, _ in NB201_FIGURES.values())
    assert hi[0] >= max(p for p, _ in NB201_FIGURES.values())


# ====================================== parsing ======================================
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5),
)


def test_genotype_files_parse_and_round_trip():
    assert load_genotype_file(GENOTYPE_DIR / "DARTS_V2.txt") == DARTS_V2
    for name in DARTS_FIGURES:
        g = load_genotype_file(GENOTYPE_DIR / f"{name}.txt")
        assert parse_genotype(format_genotype(g)) == g
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)


def test_genotype_accepts_range_keywords_comments_and_assignment():
    text = """DARTS_V2 = Genotype(  # as in genotypes.py
        reduce_concat=range(2, 6),
        reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),
                ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1),],
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=(2, 3, 4, 5),
    )"""
    assert parse_genotype(text) == DARTS_V2
    positional = format_genotype(DARTS_V2).replace("normal=", "").replace("normal_concat=", "")
    assert parse_genotype(positional.replace("[2, 3, 4, 5]", "range(2,6)", 1)) == DARTS_V2


@pytest.mark.parametrize("bad", [
    "__import__('os').system('true')",
    "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2])",           # missing fields
    "Genotype(normal=[('a', 0)], normal_concat=[2], reduce=[], reduce_concat=[], extra=[])",
    "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=range(0, 6, 2), reduce=[], reduce_concat=[])",
    "Genotype(normal=[('sep_conv_3x3' 0)], normal_concat=[], reduce=[], reduce_concat=[])",
    "Genotype(normal=[], normal_concat=[], reduce=[], reduce_concat=[]) + 1",
    "Genotype(normal=[], normal_concat=[], reduce=[], reduce_concat=[]",
])
def test_genotype_rejects_malformed_text(bad):
    with pytest.raises(ValueError):
        parse_genotype(bad)


def test_darts_network_rejects_unreachable_inputs():
    # the last edge belongs to node 5, which can read states 0..4 only
    g = DARTS_V2._replace(normal=DARTS_V2.normal[:-1] + (("sep_conv_3x3", 5),))
    with pytest.raises(ValueError):
        build_darts_network(g, C=8, layers=5)


def test_nb201_parse_and_format():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = parse_nb201(s)
    assert arch[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2))
    assert format_nb201(arch) == s
    assert parse_nb201(s + "\n") == arch


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",                          # two nodes
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~0|+|none~0|none~1|none~2|",  # repeated input
    "|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",                  # not an NB201 op
    "|nor_conv_3x3 0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|",
])
def test_nb201_rejects_malformed_text(bad):
    with pytest.raises(ValueError):
        parse_nb201(bad)


def test_mac_counter_counts_groups_strides_and_linear():
    import torch.nn as nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 5, padding=4,
                        dilation=2, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    per = macs_by_module(net, (3, 32, 32))
    assert per == {"0": 8 * 3 * 9 * 16 * 16, "1": 8 * 1 * 25 * 16 * 16, "4": 8 * 4}
    assert count_params(net) == (8 * 27 + 8) + (8 * 25 + 8) + (8 * 4 + 4)


# ============================== the hand-written search baseline ==============================
def _baseline():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "bench" / "baseline_darts.py"
    spec = importlib.util.spec_from_file_location("baseline_darts", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_baseline_supernet_shape_and_edges():
    """14 MixedOps of 8 candidates per cell, α of shape (14, 8), non-affine search BNs."""
    import torch
    b = _baseline()
    net = b.Network(4, 10, 3)
    assert [len(c._ops) for c in net.cells] == [14, 14, 14]
    assert all(len(m._ops) == 8 for c in net.cells for m in c._ops)
    assert net.alphas_normal.shape == net.alphas_reduce.shape == (14, 8)
    assert not any(p is a for p in net.parameters() for a in net.arch_parameters())
    bns = [m for m in net.cells.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.affine for m in bns)
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 10)


@pytest.mark.slow
def test_baseline_second_order_step_is_the_exact_hypergradient():
    """With no momentum/decay, DARTS's α gradient is d/dα L_val(w - η∇w L_train(w, α), α); the
    finite-difference Hessian-vector product must converge to it (O(r²)) as r shrinks."""
    import torch
    from torch.func import functional_call
    b = _baseline()
    torch.manual_seed(0)
    model = b.Network(2, 3, 3).to(torch.float64)
    xt, xv = torch.randn(2, 2, 3, 8, 8, dtype=torch.float64)
    yt, yv = torch.tensor([0, 2]), torch.tensor([1, 0])
    eta = 0.1
    arch = b.Architect(model, weight_decay=0.0, hvp_r=1e-5)
    arch._unrolled_backward(xt, yt, xv, yv, eta, torch.optim.SGD(model.parameters(), eta))
    approx = [a.grad for a in model.arch_parameters()]
    names, params = zip(*model.named_parameters())
    g = torch.autograd.grad(model.loss(xt, yt), params, create_graph=True)
    unrolled = {n: p - eta * gi for n, p, gi in zip(names, params, g)}
    val = torch.nn.functional.cross_entropy(functional_call(model, unrolled, (xv,)), yv)
    exact = torch.autograd.grad(val, model.arch_parameters())
    for a, e in zip(approx, exact):
        assert torch.allclose(a, e, rtol=1e-3, atol=1e-3 * e.abs().max().item())


def test_baseline_step_updates_alpha_and_weights():
    import torch
    b = _baseline()
    step = b.make_baseline_step(C=2, layers=3, batch=2, order=1, hw=8)
    a0 = [a.detach().clone() for a in step.model.arch_parameters()]
    w0 = [p.detach().clone() for p in step.model.parameters()]
    step()
    assert all(not torch.equal(a, x) for a, x in zip(step.model.arch_parameters(), a0))
    assert any(not torch.equal(p, x) for p, x in zip(step.model.parameters(), w0))
    normal, ncat, reduce, rcat = step.model.genotype()
    assert len(normal) == len(reduce) == 8 and ncat == rcat == [2, 3, 4, 5]
    assert all(op != "none" and src < 2 + i // 2 for i, (op, src) in enumerate(normal))


def test_documented_figures_match():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reference-figures.md").read_text()
    for params, macs in list(DARTS_FIGURES.values()) + list(NB201_FIGURES.values()):
        assert f"**{params:,}**" in doc and f"**{macs:,}**" in doc
