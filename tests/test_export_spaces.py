"""ONNX parity for the shipped spaces with derived architectures (issue: faithful spaces)."""

from __future__ import annotations

import random

import pytest
import torch

from dasc.compiler.arch import random_arch, read_arch
from dasc.compiler.pipeline import compile_space
from dasc.compiler.prune import prune
from dasc.errors import Sources
from dasc.runtime.export import export_onnx
from dasc.runtime.lower import lower
from conftest import ROOT

pytest.importorskip("onnxruntime")


def _export(ir, arch, tmp_path):
    derived = prune(ir, arch)
    torch.manual_seed(0)
    gm = lower(derived).eval()
    report = export_onnx(derived, gm, tmp_path / "model.onnx",
                         meta={"space": ir.name, "arch": arch.to_json(ir.name)})
    assert (tmp_path / "model.onnx").is_file()
    assert report.max_abs_diff <= 1e-4
    return report


@pytest.mark.slow
def test_darts_v2_at_evaluation_size_exports_with_parity(tmp_path):
    ir = compile_space(str(ROOT / "spaces" / "darts.das"), {"C": 36, "layers": 20}, Sources())
    arch = read_arch(str(ROOT / "spaces" / "genotypes" / "DARTS_V2.txt"), ir)
    _export(ir, arch, tmp_path)


@pytest.mark.parametrize("space, overrides", [
    ("pooling", {}), ("digits", {}), ("mobile", {"size": 16}),
    ("nb201", {"N": 1, "size": 16}), ("darts", {"C": 8, "layers": 3, "size": 16}),
])
def test_random_architectures_of_every_shipped_space_export_with_parity(space, overrides, tmp_path):
    ir = compile_space(str(ROOT / "spaces" / f"{space}.das"), overrides, Sources())
    _export(ir, random_arch(ir, random.Random(1)), tmp_path)
