"""ONNX export: checker-clean, equal to PyTorch in onnxruntime, named after the IR, all or nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dasc.errors import UsageError
from dasc.runtime.export import ExportError, export_onnx, onnx_model, source_names
from dasc.runtime.lower import lower

from test_train import digits_net_ir

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

META = {"space": "handnet", "arch": {"choices": [["cell.n0.e0", "sep_conv_3x3"]], "keeps": []}}


def _randomize_bn(gm) -> None:
    """Non-trivial BN statistics, so folding BN into convolutions is really exercised."""
    gen = torch.Generator().manual_seed(7)
    for m in gm.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    ir = digits_net_ir(cells=2)
    gm = lower(ir)
    _randomize_bn(gm)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(ir, gm, path, meta=META)
    return ir, gm, path, report


def test_matches_pytorch_in_onnxruntime(exported):
    ir, gm, path, report = exported
    assert report.max_abs_diff <= 1e-4
    assert set(report.diffs) == {1, 3}
    # an independent check at another batch size: the batch dimension is dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(7, 1, 8, 8)
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = gm.eval()(x).numpy()
    assert got.shape == (7, 10)
    assert np.abs(got - want).max() <= 1e-4


def test_passes_the_full_checker_and_has_a_dynamic_batch(exported):
    _, _, path, report = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("image", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [1, 8, 8]
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert report.bytes == path.stat().st_size


def test_metadata_records_space_arch_and_version(exported):
    _, _, path, report = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    from dasc import __version__
    assert props["space"] == "handnet"
    assert json.loads(props["arch"]) == META["arch"]
    assert props["dasc_version"] == __version__
    assert report.metadata == props


def test_node_names_carry_the_ir_node_ids(exported):
    ir, _, path, _ = exported
    model = onnx.load(str(path))
    names = [n.name for n in model.graph.node]
    every = names + [v for n in model.graph.node for v in (*n.input, *n.output)] + \
        [i.name for i in model.graph.initializer]
    assert not [n for n in every if "__dasc" in n]
    # the same local ids in two cells stay apart (the bare exporter would merge them)
    for cell in ("cell0", "cell1"):
        assert any(n.startswith(f"/{cell}.n0.e0/") and n.endswith("Conv") for n in names)
        assert f"/{cell}.n0/Add" in names
        assert f"/{cell}.out/Concat" in names
        assert any(n.startswith(f"/{cell}.n1.e0/") and n.endswith("MaxPool") for n in names)
    assert any(n.startswith("/stem.conv/") for n in names)
    assert any(n.startswith("/fc/") for n in names)
    # unfolded parameters keep their state-dict keys
    assert {"fc.weight", "fc.bias"} <= {i.name for i in model.graph.initializer}
    assert len(set(names)) == len(names)


def test_source_names_follow_the_ir():
    ir = digits_net_ir()
    gm = lower(ir)
    names = source_names(ir, gm)
    by_target = {n.target: names[n.name] for n in gm.graph.nodes if n.op == "call_module"}
    assert by_target["cell0.n0_e0"] == "cell0.n0.e0"
    assert by_target["stem_conv"] == "stem.conv"
    assert "cell0.out" in names.values()


def test_failed_parity_leaves_no_file(tmp_path, monkeypatch):
    ir = digits_net_ir()
    gm = lower(ir)
    real = ort.InferenceSession

    class Skewed:
        """onnxruntime returning slightly wrong logits: export must refuse to write."""

        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def run(self, *args, **kwargs):
            return [y + 1e-3 for y in self.inner.run(*args, **kwargs)]

    monkeypatch.setattr(ort, "InferenceSession", Skewed)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="onnxruntime disagrees"):
        export_onnx(ir, gm, path, meta=META)
    assert list(tmp_path.iterdir()) == []


def test_failed_parity_keeps_an_existing_file_untouched(tmp_path, monkeypatch):
    ir = digits_net_ir()
    gm = lower(ir)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model")
    real = ort.InferenceSession

    class NaNs:
        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def run(self, *args, **kwargs):
            return [np.full_like(y, np.nan) for y in self.inner.run(*args, **kwargs)]

    monkeypatch.setattr(ort, "InferenceSession", NaNs)
    with pytest.raises(ExportError):
        export_onnx(ir, gm, path, meta=META)
    assert path.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_checker_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken(model, full_check=False):
        raise onnx.checker.ValidationError("Nodes in a graph must be topologically sorted")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    ir = digits_net_ir()
    with pytest.raises(ExportError, match="onnx.checker"):
        export_onnx(ir, lower(ir), tmp_path / "m.onnx", meta=META)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory_fails_before_exporting(tmp_path):
    ir = digits_net_ir()
    with pytest.raises(UsageError, match="does not exist"):
        export_onnx(ir, lower(ir), tmp_path / "nope" / "m.onnx", meta=META)


def test_export_does_not_change_the_callers_module(tmp_path):
    ir = digits_net_ir()
    gm = lower(ir)
    gm.train()
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    export_onnx(ir, gm, tmp_path / "m.onnx", meta=META)
    assert gm.training
    for key, value in gm.state_dict().items():
        assert torch.equal(value, before[key])


def test_in_memory_model_without_verification_is_the_same_graph(exported):
    ir, gm, path, _ = exported
    model = onnx_model(ir, gm, meta=META)
    assert [n.name for n in model.graph.node] == [n.name for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("space, seeds", [("digits", range(5)), ("mobile", range(2)),
                                          ("nb201", range(2))])
def test_random_architectures_of_shipped_spaces_export_with_parity(space, seeds, tmp_path):
    import random

    from conftest import SPACES
    from dasc.compiler.arch import random_arch
    from dasc.compiler.cost import node_cost
    from dasc.compiler.pipeline import compile_space
    from dasc.compiler.prune import prune
    ir = compile_space(str(SPACES / f"{space}.das"), {"C": 4} if space == "nb201" else {})
    for seed in seeds:
        arch = random_arch(ir, random.Random(seed))
        derived = prune(ir, arch)
        torch.manual_seed(seed)
        gm = lower(derived)
        _randomize_bn(gm)
        path = tmp_path / f"{space}{seed}.onnx"
        report = export_onnx(derived, gm, path, meta={"space": ir.name,
                                                      "arch": arch.to_json(ir.name)})
        assert report.max_abs_diff <= 1e-4
        model = onnx.load(str(path))
        assert not [n.name for n in model.graph.node if "__dasc" in n.name]
        chosen = [n for n, p in derived.nodes() if getattr(p, "group", "")]
        names = [n.name for n in model.graph.node]
        # every chosen op with weights appears under its derived node id (parameter-free
        # ones may be merged with an identical op on the same input by the exporter's CSE)
        for node_id in chosen:
            if node_cost(derived, node_id).params:
                assert any(n.startswith(f"/{node_id}/") for n in names), node_id
        assert json.loads({p.key: p.value for p in model.metadata_props}["arch"])["choices"] == \
            dict(arch.choices)


def test_export_command_with_trained_weights(tmp_path, capsys):
    import random

    from conftest import SPACES
    from dasc.cli.main import main
    from dasc.compiler.arch import random_arch, write_arch
    from dasc.compiler.pipeline import compile_space
    space = str(SPACES / "digits.das")
    ir = compile_space(space)
    arch = tmp_path / "arch.json"
    write_arch(str(arch), random_arch(ir, random.Random(4)), ir.name)
    assert main(["train", space, "--arch", str(arch), "--data", "digits", "--epochs", "1",
                 "--quiet", "-o", str(tmp_path / "tr")]) == 0
    capsys.readouterr()
    model = tmp_path / "m.onnx"
    assert main(["export", space, "--arch", str(arch), "--weights", str(tmp_path / "tr"),
                 "--json", "-o", str(model)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] <= 1e-4 and report["weights"]["source"] == "train"
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert props["weights"] == "train" and json.loads(props["arch"])["space"] == "digits"
    # the exported logits are the trained network's
    from dasc.compiler.arch import read_arch
    from dasc.compiler.prune import prune
    from dasc.runtime.checkpoint import load_checkpoint
    derived = prune(ir, read_arch(str(arch), ir))
    gm = lower(derived)
    gm.load_state_dict(load_checkpoint(tmp_path / "tr" / "best.pt")["model"])
    x = torch.randn(4, 1, 8, 8)
    (got,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})
    with torch.no_grad():
        assert np.abs(got - gm.eval()(x).numpy()).max() <= 1e-4


def test_export_command_fails_fast_on_a_bad_output_path(tmp_path, capsys):
    from conftest import SPACES
    from dasc.cli.main import main
    code = main(["export", str(SPACES / "digits.das"), "--arch", "{}", "-o",
                 str(tmp_path / "missing" / "m.onnx")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
