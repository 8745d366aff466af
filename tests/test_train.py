"""Training a derived network: it learns digits, leaves loadable files, holds only chosen ops."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from dasc.compiler.ir import IR, ChoiceNode, CombineNode, InputNode, OpCall, OpNode, OutputNode
from dasc.errors import NumericalError, UsageError
from dasc.ops.registry import Shape
from dasc.runtime.checkpoint import fingerprint, load_checkpoint
from dasc.runtime.data import Dataset, load_dataset
from dasc.runtime.lower import lower
from dasc.runtime.mixed import MixedOp
from dasc.runtime.train import TrainConfig, count_params, hook_macs, network_macs, train

CELL_OPS = ("sep_conv_3x3", "skip_connect", "max_pool_3x3", "dil_conv_3x3")


def digits_net_ir(c: int = 8, cells: int = 1) -> IR:
    """A derived network written by hand: stem, `cells` DARTS-like cells, a reduction, head.

    Every cell has the same local node ids (`cellK.n0.e0`, ...), as cells of a real space do.
    """
    s = Shape(c, 8, 8)
    ir = IR("handnet", nx.DiGraph(), (("C", c),))

    def op(node_id, name, inputs, shape, scope="", **args):
        ir.add(node_id, OpNode(OpCall(name, tuple(args.items())), tuple(inputs), shape=shape,
                               scope=scope))

    ir.add("image", InputNode("image", shape=Shape(1, 8, 8)))
    op("stem.conv", "conv", ["image"], s, c=c, k=3)
    op("stem", "bn", ["stem.conv"], s)
    prev = "stem"
    for k in range(cells):
        cell = f"cell{k}"
        op(f"{cell}.p", "relu_conv_bn", [prev], s, cell, c=c, k=1)
        op(f"{cell}.n0.e0", CELL_OPS[0], [f"{cell}.p"], s, cell)
        op(f"{cell}.n0.e1", CELL_OPS[1], [f"{cell}.p"], s, cell)
        ir.add(f"{cell}.n0", CombineNode("sum", (f"{cell}.n0.e0", f"{cell}.n0.e1"), shape=s,
                                         scope=cell))
        op(f"{cell}.n1.e0", CELL_OPS[2], [f"{cell}.n0"], s, cell)
        op(f"{cell}.n1.e1", CELL_OPS[3], [f"{cell}.p"], s, cell)
        ir.add(f"{cell}.n1", CombineNode("sum", (f"{cell}.n1.e0", f"{cell}.n1.e1"), shape=s,
                                         scope=cell))
        ir.add(f"{cell}.out", CombineNode("concat", (f"{cell}.n0", f"{cell}.n1"),
                                          shape=Shape(2 * c, 8, 8), scope=cell))
        op(f"{cell}.proj", "relu_conv_bn", [f"{cell}.out"], s, cell, c=c, k=1)
        prev = f"{cell}.proj"
    op("reduce", "nor_conv_3x3", [prev], Shape(2 * c, 4, 4), stride=2, c=2 * c)
    op("gap", "gap", ["reduce"], Shape(2 * c, 1, 1))
    op("fc", "linear", ["gap"], Shape(10, 1, 1), n=10)
    ir.add("out", OutputNode(("fc",), shape=Shape(10, 1, 1)))
    return ir


FAST = TrainConfig(epochs=4, batch_size=64, lr=0.05, seed=0)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """One short training run shared by the tests that inspect its results and files."""
    out = tmp_path_factory.mktemp("train")
    events: list[dict] = []
    result = train(digits_net_ir(), digits, FAST, out, events.append, meta={"space": "handnet"})
    return result, out, events


def test_learns_digits_well_above_chance(trained):
    result, _, _ = trained
    # 10 classes: chance is 0.1. Measured 0.85-0.92 for this config; keep a wide margin.
    assert result.test_acc > 0.7
    assert result.test_acc_last > 0.5
    assert 1 <= result.best_epoch <= FAST.epochs
    assert result.val_acc > 0.6


def test_run_directory_files(trained):
    result, out, events = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "config.json", "last.pt", "metrics.jsonl", "summary.json"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(records[0])
    assert records[0]["lr"] == pytest.approx(FAST.lr)  # cosine: starts at lr, decays
    assert records[-1]["lr"] < records[0]["lr"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc"] == pytest.approx(result.test_acc)
    assert summary["params"] == result.params and summary["macs"] == result.macs
    assert summary["space"] == "handnet"
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == FAST.lr
    assert [e["epoch"] for e in events if e.get("done")] == [1, 2, 3, 4]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_checkpoints_load_with_weights_only(trained, digits):
    result, out, _ = trained
    ir = digits_net_ir()
    for name in ("best.pt", "last.pt"):
        raw = torch.load(out / name, map_location="cpu", weights_only=True)
        assert raw["fingerprint"] == fingerprint(ir) == result.fingerprint
        state = load_checkpoint(out / name, fingerprint(ir))
        model = lower(ir)
        model.load_state_dict(state["model"])
    best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == result.best_epoch
    with pytest.raises(UsageError, match="different space"):
        load_checkpoint(out / "best.pt", fingerprint(digits_net_ir(c=4)))


def test_best_checkpoint_reproduces_reported_accuracy(trained, digits):
    result, out, _ = trained
    model = lower(digits_net_ir())
    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(digits.x_test)).argmax(1).numpy()
    assert float((pred == digits.y_test).mean()) == pytest.approx(result.test_acc)


def test_derived_module_holds_exactly_the_chosen_ops():
    ir = digits_net_ir(cells=2)
    gm = lower(ir)
    assert not any(isinstance(m, MixedOp) for m in gm.modules())
    assert not hasattr(gm, "alphas") and not hasattr(gm, "gate")
    assert gm.dasc.alphas == {}
    called = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    op_nodes = [n for n, p in ir.nodes() if isinstance(p, OpNode)]
    assert len(called) == len(op_nodes) == len(set(called))
    # exactly one module per op: two cells, each with the four chosen cell ops
    kinds = [type(gm.get_submodule(t)).__name__ for t in called]
    for cell in ("cell0", "cell1"):
        assert [t for t in called if t.startswith(cell + ".n")] == [
            f"{cell}.n0_e0", f"{cell}.n0_e1", f"{cell}.n1_e0", f"{cell}.n1_e1"]
    assert kinds.count("SepConv") == 2 and kinds.count("DilConv") == 2
    assert count_params(gm) == sum(p.numel() for p in gm.parameters())


def test_refuses_a_super_network(digits, tmp_path):
    ir = digits_net_ir()
    node = ir.node("cell0.n0.e0")
    from dasc.compiler.ir import BlockNode, Candidate
    cands = tuple(Candidate(op, (BlockNode(OpCall(op), (-1,), node.shape),)) for op in
                  ("sep_conv_3x3", "max_pool_3x3"))
    ir.graph.remove_node("cell0.n0.e0")
    ir.add("cell0.n0.e0", ChoiceNode(cands, node.inputs, "cell.n0.e0", "cell0",
                                     shape=node.shape, scope="cell0"))
    ir.graph.add_edge("cell0.n0.e0", "cell0.n0")
    with pytest.raises(UsageError, match="choice point"):
        train(ir, digits, FAST, tmp_path)


def test_macs_count_convolutions_and_linear_layers():
    """conv 1->8 3x3 on 8x8 plus linear 8->3 after pooling: 8*8*8*9 + 8*3 MACs."""
    ir = IR("small", nx.DiGraph(), ())
    ir.add("image", InputNode("image", shape=Shape(1, 8, 8)))
    ir.add("conv", OpNode(OpCall("conv", (("c", 8), ("k", 3))), ("image",), shape=Shape(8, 8, 8)))
    ir.add("bn", OpNode(OpCall("bn"), ("conv",), shape=Shape(8, 8, 8)))
    ir.add("gap", OpNode(OpCall("gap"), ("bn",), shape=Shape(8, 1, 1)))
    ir.add("fc", OpNode(OpCall("linear", (("n", 3),)), ("gap",), shape=Shape(3, 1, 1)))
    ir.add("out", OutputNode(("fc",), shape=Shape(3, 1, 1)))
    gm = lower(ir)
    assert hook_macs(gm, (1, 8, 8)) == 8 * 8 * 8 * 9 + 8 * 3
    macs, _ = network_macs(ir, gm)
    assert macs == 8 * 8 * 8 * 9 + 8 * 3
    assert count_params(gm) == 8 * 9 + 2 * 8 + 8 * 3 + 3


def test_cost_model_and_hooks_agree_on_a_derived_network():
    pytest.importorskip("dasc.compiler.cost")
    ir = digits_net_ir(cells=2)
    gm = lower(ir)
    macs, method = network_macs(ir, gm)
    assert method == "cost-model"
    assert macs == hook_macs(gm, (1, 8, 8))


def test_same_seed_same_run(digits, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05, seed=3)
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        result = train(digits_net_ir(c=4), digits, cfg, tmp_path / name)
        (record,) = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
        record.pop("seconds")
        runs.append((record, result.test_acc))
    assert runs[0] == runs[1]


def test_nan_loss_stops_with_a_numerical_error(digits, tmp_path):
    x = digits.x_train.copy()
    x[:] = np.nan
    bad = Dataset("nan", x, digits.y_train, digits.x_test, digits.y_test)
    with pytest.raises(NumericalError, match="training loss"):
        train(digits_net_ir(c=4), bad, TrainConfig(epochs=1), tmp_path)


def test_resume_in_process_matches_and_a_damaged_resume_state_is_refused(digits, tmp_path):
    """train(resume=last.pt of epoch 2 of 4) ends where an uninterrupted run does; a last.pt
    whose optimizer state was edited is a located UsageError, not a traceback."""
    ir, cfg = digits_net_ir(c=4), TrainConfig(epochs=4, batch_size=128, lr=0.05, seed=1)
    (tmp_path / "full").mkdir()
    full = train(ir, digits, cfg, tmp_path / "full")
    (tmp_path / "cut").mkdir()

    def stop_after_epoch_2(info: dict) -> None:
        if info.get("done") and info["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ir, digits, cfg, tmp_path / "cut", stop_after_epoch_2)
    state = load_checkpoint(tmp_path / "cut" / "last.pt", fingerprint(ir))
    assert state["epoch"] == 2 and set(state["resume"]) >= {"opt", "sched", "best_model"}
    resumed = train(ir, digits, cfg, tmp_path / "cut", resume=state)
    assert (resumed.test_acc, resumed.best_epoch, resumed.val_acc) == (
        full.test_acc, full.best_epoch, full.val_acc)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    state["resume"]["opt"]["param_groups"] = []
    with pytest.raises(UsageError, match="resume state in .*last.pt is damaged") as info:
        train(ir, digits, cfg, tmp_path / "cut", resume=state)
    assert info.value.span is not None


def test_inherited_initial_weights_are_used(digits, tmp_path):
    ir = digits_net_ir(c=4)
    torch.manual_seed(123)
    donor = lower(ir).state_dict()
    result = train(ir, digits, TrainConfig(epochs=1, lr=0.0, momentum=0.0, weight_decay=0.0),
                   tmp_path, init=donor)
    last = load_checkpoint(tmp_path / "last.pt")["model"]
    # lr 0: weights stay the donor's (BN running statistics do move in training mode)
    for key, value in donor.items():
        if "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(last[key], value)
    assert result.epochs == 1


@pytest.mark.parametrize("kwargs, flag", [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch"),
                                          ({"lr": -1.0}, "lr"), ({"val_fraction": 1.0}, "val"),
                                          ({"device": "tpu"}, "device")])
def test_config_rejects_bad_values(kwargs, flag):
    with pytest.raises(UsageError, match=flag):
        TrainConfig(**kwargs)


def test_hook_macs_leaves_module_mode_alone():
    gm = lower(digits_net_ir(c=4))
    gm.train()
    hook_macs(gm, (1, 8, 8))
    assert gm.training
    assert all(not m._forward_hooks for m in gm.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


# ----------------------------------------------------------------------------- inherited weights

def _space(name: str):
    from conftest import SPACES
    from dasc.compiler.pipeline import compile_space
    return compile_space(str(SPACES / f"{name}.das"))


def _random_stats(gm) -> None:
    gen = torch.Generator().manual_seed(5)
    for m in gm.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def test_inherit_key_map_follows_prune_and_lower_naming():
    from dasc.compiler.arch import Arch
    from dasc.compiler.prune import prune
    from dasc.runtime.inherit import inherit_key_map
    ir = _space("digits")
    arch = Arch((("digit[stride=1].n2.e0", "sep_conv_3x3"), ("digit[stride=1].n2.e1", "skip_connect"),
                 ("digit[stride=1].n3.e0", "dil_conv_3x3"), ("digit[stride=1].n3.e2", "max_pool_3x3"),
                 ("digit[stride=2].n2.e0", "avg_pool_3x3"), ("digit[stride=2].n2.e1", "sep_conv_3x3"),
                 ("digit[stride=2].n3.e1", "skip_connect"), ("digit[stride=2].n3.e2", "dil_conv_3x3")),
                (("digit[stride=1].n2", (0, 1)), ("digit[stride=1].n3", (0, 2)),
                 ("digit[stride=2].n2", (0, 1)), ("digit[stride=2].n3", (1, 2))))
    key_map = inherit_key_map(ir, prune(ir, arch), arch)
    assert key_map["digit0.n2_e0_sep_conv_3x3"] == "digit0.n2_e0.candidates.sep_conv_3x3"
    assert key_map["digit1.n2_e1_sep_conv_3x3"] == "digit1.n2_e1.candidates.sep_conv_3x3"
    assert key_map["digit2.n3_e0_dil_conv_3x3"] == "digit2.n3_e0.candidates.dil_conv_3x3"
    assert key_map["stem_conv"] == "stem_conv" and key_map["digit2.p0"] == "digit2.p0"
    assert not any(k.startswith("digit0.n3_e1") for k in key_map)  # a dropped edge


@pytest.mark.parametrize("space, seeds", [("digits", range(4)), ("mobile", range(2))])
def test_inherited_network_computes_the_pinned_supernet(space, seeds):
    """Differential oracle: derived net with inherited weights == supernet with gates pinned."""
    import random

    from dasc.compiler.arch import random_arch
    from dasc.compiler.prune import prune
    from dasc.runtime.finish import pinned, pinned_weights
    from dasc.runtime.inherit import inherit_weights
    ir = _space(space)
    torch.manual_seed(0)
    supernet = lower(ir)
    _random_stats(supernet)
    supernet.eval()
    shape = ir.node(ir.input).shape
    x = torch.randn(2, shape.c, shape.h, shape.w)
    for seed in seeds:
        arch = random_arch(ir, random.Random(seed))
        derived_ir = prune(ir, arch)
        derived = lower(derived_ir)
        got = inherit_weights(ir, supernet.state_dict(), derived_ir, arch, derived.state_dict())
        assert got.fresh == () and len(got.copied) == len(derived.state_dict())
        derived.load_state_dict(got.state)
        derived.eval()
        with torch.no_grad(), pinned(supernet, pinned_weights(ir, supernet, arch)):
            want = supernet(x)
        with torch.no_grad():
            torch.testing.assert_close(derived(x), want, rtol=1e-4, atol=1e-5)


def test_weights_without_a_counterpart_stay_fresh():
    from dasc.runtime.inherit import inherit_weights
    import random

    from dasc.compiler.arch import random_arch
    from dasc.compiler.prune import prune
    ir = _space("digits")
    arch = random_arch(ir, random.Random(0))
    derived_ir = prune(ir, arch)
    derived = lower(derived_ir).state_dict()
    super_state = {k: v for k, v in lower(ir).state_dict().items() if not k.startswith("out.")}
    super_state["stem_conv.weight"] = torch.zeros(3, 3)  # wrong shape: not copied
    got = inherit_weights(ir, super_state, derived_ir, arch, derived)
    assert set(got.fresh) == {"out.weight", "out.bias", "stem_conv.weight"}
    torch.testing.assert_close(got.state["out.weight"], derived["out.weight"])


def test_load_weights_tells_search_and_train_checkpoints_apart(tmp_path):
    import random

    from dasc.compiler.arch import random_arch
    from dasc.compiler.prune import prune
    from dasc.runtime.checkpoint import save_checkpoint
    from dasc.runtime.inherit import load_weights
    ir = _space("digits")
    arch = random_arch(ir, random.Random(1))
    derived_ir = prune(ir, arch)
    fresh = lower(derived_ir).state_dict()
    supernet = lower(ir).state_dict()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt",
                    {"fingerprint": fingerprint(ir), "model": supernet})
    state, info = load_weights(tmp_path / "run", ir, derived_ir, arch, fresh)
    assert info["source"] == "search" and info["fresh"] == 0
    assert info["copied"] == len(fresh)
    torch.testing.assert_close(state["stem_conv.weight"], supernet["stem_conv.weight"])
    save_checkpoint(tmp_path / "best.pt", {"fingerprint": fingerprint(derived_ir), "model": state})
    again, info = load_weights(tmp_path / "best.pt", ir, derived_ir, arch, fresh)
    assert info["source"] == "train"
    torch.testing.assert_close(again["out.weight"], state["out.weight"])
    save_checkpoint(tmp_path / "other.pt", {"fingerprint": "0" * 16, "model": state})
    with pytest.raises(UsageError, match="another space"):
        load_weights(tmp_path / "other.pt", ir, derived_ir, arch, fresh)


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def digits_arch(tmp_path):
    import random

    from dasc.compiler.arch import random_arch, write_arch
    ir = _space("digits")
    path = tmp_path / "arch.json"
    write_arch(str(path), random_arch(ir, random.Random(2)), ir.name)
    return path


def test_train_command_json_and_run_directory_guard(tmp_path, digits_arch, capsys):
    from conftest import SPACES
    from dasc.cli.main import main
    out = tmp_path / "train"
    argv = ["train", str(SPACES / "digits.das"), "--arch", str(digits_arch), "--data", "digits",
            "--epochs", "1", "--lr", "0.05", "--json", "-o", str(out)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["space"] == "digits" and report["epochs"] == 1
    assert 0.0 <= report["test_acc"] <= 1.0 and report["params"] > 0 and report["macs"] > 0
    assert report["config"]["lr"] == 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"]["format"] == "dasc-arch" and summary["data"] == "digits"
    assert main(argv) == 2  # never overwrite without --force
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(argv[:-1] + [str(tmp_path / "mine"), "--force"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_train_command_rejects_bad_settings_before_work(tmp_path, digits_arch, capsys):
    from conftest import SPACES
    from dasc.cli.main import main
    out = tmp_path / "t"
    code = main(["train", str(SPACES / "digits.das"), "--arch", str(digits_arch), "--data",
                 "digits", "--epochs", "0", "-o", str(out)])
    assert code == 2 and "--epochs must be at least 1" in capsys.readouterr().err
    assert not out.exists()
