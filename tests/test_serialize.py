"""IR JSON: `load(dump(ir)) == ir` exactly (spans included), a version, clean errors."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from dasc.compiler.expand import expand
from dasc.compiler.ir import ir_equal
from dasc.compiler.pipeline import compile_module, compile_space
from dasc.compiler.serialize import VERSION, dump, load
from dasc.compiler.verify import verify
from dasc.dsl.parser import parse
from dasc.errors import Span, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.strategies import cell_spaces, chain_spaces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT = """
space t
param C = 4
input image [3, 8, 8]
op res(x; c) { return sum(x, conv(x, c)) }
cell c(x; w) shared per w { return sum(choice({res(c=2 * w), none, skip_connect}, x),
                                   relu(x)) keep 1 }
network { return linear(gap(c(c(image, 3), 3)), 10) }
constraint count none in c <= 1
search { gate = gumbel  tau = 0.5  table = "lat.json" }
"""


def roundtrip(ir):
    text = json.dumps(dump(ir))
    back = load(json.loads(text))
    assert back == ir and ir_equal(back, ir)
    assert json.dumps(dump(back)) == text
    return back


def test_roundtrip_with_adapters_blocks_rules_and_search():
    ir = compile_module(parse(TEXT, "t.das"), {})
    back = roundtrip(ir)
    verify(back, "load")
    assert [n for n, _ in back.nodes()] == [n for n, _ in ir.nodes()]
    assert back.node("c0.out").span == ir.node("c0.out").span


def test_roundtrip_before_shapes():
    roundtrip(expand(parse(TEXT, "t.das"), {}))


def test_format_header_and_readable_fields():
    d = dump(compile_module(parse(TEXT, "t.das"), {}))
    assert d["format"] == "dasc-ir" and d["version"] == VERSION and d["name"] == "t"
    assert d["params"] == {"C": 4}
    node = next(n for n in d["nodes"] if n["id"] == "c0.out")
    assert node["type"] == "combine" and node["kind"] == "sum" and node["keep"] == 1
    choice = next(n for n in d["nodes"] if n["type"] == "choice")
    assert choice["alpha"] == "c[w=3].out.e0" and choice["shape"] == [6, 8, 8]
    assert choice["candidates"][0]["nodes"][0]["call"] == {"op": "conv", "args": {
        "c": 6, "k": 3, "stride": 1, "dilation": 1, "groups": 1, "bias": 0}}
    assert d["rules"][0] == {"type": "count", "cell": "c", "op": "none", "max_count": 1,
                             "span": ["t.das", 9, 1, 9, 32]}


def test_ir_equal_sees_spans_and_payloads():
    ir = compile_module(parse(TEXT, "t.das"), {})
    other = load(dump(ir))
    node = other.node("c0.out")
    other.graph.nodes["c0.out"]["node"] = replace(node, span=Span("x.das", 1, 1, 1, 2))
    assert node == other.node("c0.out")          # payload equality ignores spans...
    assert not ir_equal(ir, other) and ir != other  # ...the IR's does not
    third = load(dump(ir))
    third.graph.nodes["c0.out"]["node"] = replace(node, keep=2)
    assert third != ir


@pytest.mark.parametrize("d, words", [
    ({"format": "other"}, "not a dasc IR"),
    ({"format": "dasc-ir", "version": 999}, "version 999"),
    ({"format": "dasc-ir", "version": VERSION, "nodes": [{"type": "op"}]}, "corrupt"),
    ({"format": "dasc-ir", "version": VERSION, "name": "x", "params": {}, "regions": [],
      "rules": [], "search": [], "nodes": [{"id": "a", "type": "output", "inputs": ["b"]}]},
     "missing node"),
    ([1, 2], "not a dasc IR"),
])
def test_bad_files_are_usage_errors(d, words):
    with pytest.raises(UsageError, match=words):
        load(d)


@pytest.mark.parametrize("space", sorted(p.name for p in (ROOT / "spaces").glob("*.das")))
def test_shipped_spaces_roundtrip(space):
    roundtrip(compile_space(str(ROOT / "spaces" / space)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell_spaces())
def test_random_cell_spaces_roundtrip(space):
    roundtrip(compile_module(parse(space.text, "r.das"), {}, constraints=False))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain_spaces())
def test_random_chains_roundtrip(space):
    roundtrip(compile_module(parse(space.text, "r.das"), {}))
