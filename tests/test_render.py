"""`compiler/dot.py` and `dasc render`: clusters, adapter marks, α and architecture views.

The unit tests draw a small hand-built IR (so they do not depend on the compiler passes) and
feed the text to the real Graphviz `dot`, which is the only honest check that the escaping is
right. The end-to-end tests compile a space that needs adapters and look inside the SVG.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from dasc.compiler.dot import quote, to_dot
from dasc.compiler.ir import (
    IR, BlockNode, Candidate, ChoiceNode, CombineNode, InputNode, OpCall, OpNode, OutputNode,
    Region,
)
from dasc.errors import UsageError
from dasc.ops import Shape

ROOT = Path(__file__).resolve().parent.parent

WEIRD = 'we"ird\\op<x>{|}'


def toy_ir() -> IR:
    """image -> stem -> cell0 { n1 = sum(choice(narrow|wide), adapter(choice(skip|none))) keep 1 }
    -> gap -> linear -> output. Both kinds of adapter appear: inside a candidate and on a sum
    input."""
    s8, s16 = Shape(8, 8, 8), Shape(16, 8, 8)
    ir = IR("toy", nx.DiGraph(), params=(("C", 8),),
            regions=(Region("cell0", "cell", "cell[]", ("stem",), "cell0.n1", True),))
    ir.add("image", InputNode("image", shape=Shape(3, 8, 8)))
    ir.add("stem", OpNode(OpCall("conv", (("c", 8), ("k", 3), ("stride", 1))), ("image",), s8))
    narrow = Candidate("narrow", (
        BlockNode(OpCall("conv", (("c", 8), ("k", 3))), (-1,), s8),
        BlockNode(OpCall("adapter", (("c", 16),)), (0,), s16, adapter="channels 8 vs 16")))
    wide = Candidate("wide", (BlockNode(OpCall("conv", (("c", 16), ("k", 5))), (-1,), s16),))
    weird = Candidate(WEIRD, (BlockNode(OpCall("conv", (("c", 16),)), (-1,), s16),))
    ir.add("cell0.n1.e0", ChoiceNode((narrow, wide, weird), ("stem",), "cell[].n1.e0", "cell0",
                                     s16, scope="cell0"))
    skip = Candidate("skip_connect", (BlockNode(OpCall("skip_connect"), (-1,), s8),), skip=True)
    none = Candidate("none", (BlockNode(OpCall("none"), (-1,), s8),), zero=True)
    ir.add("cell0.n1.e1", ChoiceNode((skip, none), ("stem",), "cell[].n1.e1", "cell0", s8,
                                     scope="cell0"))
    ir.add("cell0.n1.e1.adapter", OpNode(OpCall("adapter", (("c", 16),)), ("cell0.n1.e1",), s16,
                                         scope="cell0", adapter="sum of 8 and 16 channels"))
    ir.add("cell0.n1", CombineNode("sum", ("cell0.n1.e0", "cell0.n1.e1.adapter"), keep=1,
                                   select="cell[].n1", region="cell0", shape=s16, scope="cell0"))
    ir.add("gap", OpNode(OpCall("gap"), ("cell0.n1",), Shape(16, 1, 1)))
    ir.add("linear", OpNode(OpCall("linear", (("n", 10), ("bias", 1))), ("gap",),
                            Shape(10, 1, 1)))
    ir.add("output", OutputNode(("linear",), Shape(10, 1, 1)))
    return ir


@dataclass(frozen=True)
class FakeArch:
    """The shape of `compiler.arch.Arch` that `to_dot` relies on."""

    choices: tuple[tuple[str, str], ...]
    keeps: tuple[tuple[str, tuple[int, ...]], ...] = ()


def svg_of(dot_text: str) -> str:
    proc = subprocess.run(["dot", "-Tsvg"], input=dot_text.encode(), capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Warning" not in proc.stderr and b"Error" not in proc.stderr, proc.stderr.decode()
    return proc.stdout.decode("utf-8")


needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz 'dot' missing: `make test` installs it")


# ----------------------------------------------------------------------------- quoting


@pytest.mark.parametrize("text,expected", [
    ("plain", '"plain"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ("two\nlines", '"two\\nlines"'),
    ("<html>", '"<html>"'),
    ("\\N", '"\\\\N"'),  # never a Graphviz escape for the node name
])
def test_quote(text, expected):
    assert quote(text) == expected


def test_quote_record_shapes_escape_field_syntax():
    assert quote("a|b<c>{d}", record=True) == '"a\\|b\\<c\\>\\{d\\}"'


# ----------------------------------------------------------------------------- the space view


def test_space_view_has_clusters_choices_and_adapters():
    text = to_dot(toy_ir())
    assert text.startswith('digraph "toy" {')
    assert 'subgraph "cluster_cell0"' in text
    assert "cell0  (cell[])" in text  # the cluster names the sharing key
    assert "narrow, wide" in text  # the candidate set
    assert "adapter 8→16" in text  # in-candidate adapter, as a note on the choice
    assert text.count("adapter 8→16") == 2  # and the sum-input adapter node
    assert 'style="dashed,bold", color="#ff8c00"' in text
    assert "keep 1" in text
    # the stem conv shows only non-default arguments
    assert '"conv(c=8)\\n[8, 8, 8]"' in text


def test_shared_candidate_sets_get_a_legend():
    ir = toy_ir()
    node = ir.node("cell0.n1.e0")
    many = tuple(Candidate(f"op{i}", node.candidates[1].nodes) for i in range(5))
    ir.replace("cell0.n1.e0", type(node)(many, node.inputs, node.alpha, node.region,
                                           node.shape, node.scope))
    e1 = ir.node("cell0.n1.e1")
    ir.replace("cell0.n1.e1", type(e1)(many, e1.inputs, e1.alpha, e1.region, e1.shape,
                                       e1.scope))
    text = to_dot(ir)
    assert "S1 = { op0, op1, op2, op3, op4 }" in text
    assert text.count("5 ops: S1") == 2


def test_space_view_is_deterministic():
    assert to_dot(toy_ir()) == to_dot(toy_ir())


@needs_dot
def test_space_view_is_valid_dot_and_escapes_labels():
    svg = svg_of(to_dot(toy_ir()))
    assert "<title>cluster_cell0</title>" in svg
    assert "adapter 8→16" in svg
    assert "we&quot;ird\\op&lt;x&gt;{|}" in svg  # shown literally, nothing interpreted


# ----------------------------------------------------------------------------- α view


def test_alpha_view_draws_weighted_parallel_edges():
    alpha = {"cell[].n1.e0": [0.1, 0.7, 0.2], "cell[].n1.e1": [0.9, 0.1]}
    text = to_dot(toy_ir(), alpha=alpha)
    edges = re.findall(r'"stem" -> "cell0\.n1\.e0" \[label="((?:[^"\\]|\\.)*)", penwidth=([0-9.]+)', text)
    assert [label for label, _ in edges][:2] == ["narrow 0.10\\n+ adapter 8→16", "wide 0.70"]
    widths = [float(w) for _, w in edges]
    assert widths[1] == max(widths) and widths[0] < widths[2] < widths[1]
    assert "skip_connect 0.90" in text and "none 0.10" in text


@needs_dot
def test_alpha_view_is_valid_dot():
    svg = svg_of(to_dot(toy_ir(), alpha={"cell[].n1.e0": [0.1, 0.7, 0.2],
                                          "cell[].n1.e1": [0.9, 0.1]}))
    assert "wide 0.70" in svg


@pytest.mark.parametrize("alpha,message", [
    ({"cell[].n1.e0": [0.5, 0.5, 0.0]}, "no weights for choice 'cell[].n1.e1'"),
    ({"cell[].n1.e0": [1.0], "cell[].n1.e1": [0.5, 0.5]}, "has 3 candidates but the run gives 1"),
])
def test_alpha_that_does_not_fit_is_a_usage_error(alpha, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        to_dot(toy_ir(), alpha=alpha)


# ----------------------------------------------------------------------------- arch view


def test_arch_view_keeps_only_chosen_ops_and_kept_inputs():
    arch = FakeArch(choices=(("cell[].n1.e0", "narrow"), ("cell[].n1.e1", "skip_connect")),
                    keeps=(("cell[].n1", (0,)),))
    text = to_dot(toy_ir(), arch=arch)
    assert '"narrow\\n[16, 8, 8]"' in text
    assert "adapter 8→16" in text  # the chosen candidate's adapter stays visible
    assert '"cell0.n1.e0/adapter0" -> "cell0.n1"' in text
    # input 1 of n1 was dropped, so its choice and adapter are not drawn at all
    assert "cell0.n1.e1" not in text and "skip_connect" not in text
    assert "wide" not in text


def test_arch_view_needs_no_op_for_dropped_edges():
    arch = FakeArch(choices=(("cell[].n1.e0", "wide"),), keeps=(("cell[].n1", (0,)),))
    assert '"wide\\n[16, 8, 8]"' in to_dot(toy_ir(), arch=arch)


def test_arch_view_drops_none_edges():
    arch = FakeArch(choices=(("cell[].n1.e0", "wide"), ("cell[].n1.e1", "none")),
                    keeps=(("cell[].n1", (0, 1)),))
    text = to_dot(toy_ir(), arch=arch)
    assert '"wide\\n[16, 8, 8]"' in text
    assert "cell0.n1.e1" not in text


@needs_dot
def test_arch_view_is_valid_dot():
    arch = FakeArch(choices=(("cell[].n1.e0", WEIRD), ("cell[].n1.e1", "skip_connect")),
                    keeps=(("cell[].n1", (0, 1)),))
    svg = svg_of(to_dot(toy_ir(), arch=arch))
    assert "<title>cluster_cell0</title>" in svg


@pytest.mark.parametrize("arch,message", [
    (FakeArch(choices=(("cell[].n1.e0", "wide"),), keeps=(("cell[].n1", (0, 1)),)),
     "does not choose an op for 'cell[].n1.e1'"),
    (FakeArch(choices=(("cell[].n1.e0", "huge"), ("cell[].n1.e1", "none"))),
     "picks 'huge' for 'cell[].n1.e0'"),
    (FakeArch(choices=(("cell[].n1.e0", "wide"), ("cell[].n1.e1", "none")),
              keeps=(("cell[].n1", (5,)),)), "keeps input 5 of 'cell[].n1'"),
])
def test_arch_that_does_not_fit_is_a_usage_error(arch, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        to_dot(toy_ir(), arch=arch)


def test_arch_and_alpha_together_are_refused():
    with pytest.raises(UsageError):
        to_dot(toy_ir(), arch=FakeArch(choices=()), alpha={})


# ----------------------------------------------------------------------------- dasc render

# A chain whose width is searched: the candidates of `w` differ in channels (adapters inside the
# choice) and the residual sum adds 8 to 16 channels (an adapter on a sum input).
ADAPTER_SPACE = """\
space widths
param C = 8
input image [3, 8, 8]
ops widths = { conv(c=8), conv(c=16) }
cell block(x) shared {
  w = choice(widths, x)
  return sum(w, x)
}
network {
  x = relu(bn(conv(image, C, k=3)))
  y = block(x)
  return linear(gap(y), 10)
}
"""


@pytest.fixture
def adapter_space(tmp_path):
    pytest.importorskip("dasc.compiler.pipeline")
    path = tmp_path / "widths.das"
    path.write_text(ADAPTER_SPACE, encoding="utf-8")
    return path


@needs_dot
@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_render_formats(dasc, adapter_space, tmp_path, ext, magic):
    out = tmp_path / f"space.{ext}"
    res = dasc("render", str(adapter_space), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes().startswith(magic)
    assert res.stderr.strip() == f"wrote {out}"


@needs_dot
def test_render_svg_shows_clusters_and_adapters(dasc, adapter_space, tmp_path):
    out = tmp_path / "space.svg"
    res = dasc("render", str(adapter_space), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["format"] == "svg" and info["view"] == "space"
    svg = out.read_text(encoding="utf-8")
    assert "<title>cluster_block0</title>" in svg
    assert "adapter 8→16" in svg
    assert 'stroke-dasharray' in svg  # dashed outlines mark the adapters


def test_render_gv_needs_no_graphviz(dasc, adapter_space, tmp_path):
    out = tmp_path / "space.gv"
    res = dasc("render", str(adapter_space), "-o", str(out), env={"DASC_DOT": "/nonexistent"})
    assert res.returncode == 0, res.stderr
    assert out.read_text(encoding="utf-8").startswith('digraph "widths"')


def test_render_without_graphviz_is_a_clear_error(dasc, adapter_space, tmp_path):
    res = dasc("render", str(adapter_space), "-o", str(tmp_path / "x.svg"),
               env={"DASC_DOT": "/nonexistent/dot"})
    assert res.returncode == 2
    assert "dasc: error: cannot render images: DASC_DOT=/nonexistent/dot was not found" \
        in res.stderr
    assert "hint: install Graphviz" in res.stderr
    assert not (tmp_path / "x.svg").exists()


def test_render_run_weights(dasc, adapter_space, tmp_path):
    """`--run` reads the newest weights of alpha_history.json, torch-free."""
    run = tmp_path / "run"
    run.mkdir()
    from dasc.compiler.pipeline import compile_space

    ir = compile_space(str(adapter_space), {})
    history = [{"epoch": e, "weights": {n.alpha: [1.0 / len(n.candidates)] * len(n.candidates)
                                        for _, n in ir.choices()}} for e in (1, 2)]
    (run / "alpha_history.json").write_text(json.dumps(history))
    out = tmp_path / "run.gv"
    res = dasc("render", str(adapter_space), "--run", str(run), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "penwidth" in out.read_text(encoding="utf-8")
    bad = dasc("render", str(adapter_space), "--run", str(tmp_path), "-o", str(out))
    assert bad.returncode == 2 and "has no alpha_history.json" in bad.stderr


@needs_dot
def test_render_arch_draws_only_chosen_ops(dasc, tmp_path):
    """`--arch` with an arch.json of the DARTS space: kept edges only, no choice lists."""
    import random

    from dasc.compiler.arch import random_arch, write_arch
    from dasc.compiler.pipeline import compile_space

    space = str(ROOT / "spaces" / "darts.das")
    ir = compile_space(space, {"layers": 3})
    arch = random_arch(ir, random.Random(0))
    arch_file = tmp_path / "arch.json"
    write_arch(str(arch_file), arch, ir.name)
    out = tmp_path / "arch.svg"
    res = dasc("render", space, "--set", "layers=3", "--arch", str(arch_file), "-o", str(out),
               "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["view"] == "arch"
    svg = out.read_text(encoding="utf-8")
    assert "choice " not in svg and "ops: S1" not in svg
    assert svg.count("<title>cluster_darts") == 3
    picked = {op for _, op in arch.choices}
    assert any(op in svg for op in picked)
    # an architecture of another shape is refused with the fitting error, not a traceback
    res = dasc("render", str(ROOT / "spaces" / "pooling.das"), "--arch", str(arch_file),
               "-o", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "the architecture is for space 'darts'" in res.stderr
