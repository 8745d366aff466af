"""The whole front end: shipped spaces compile, semantic mistakes give golden diagnostics.

Golden files: tests/golden/compile/<name>.das holds a mistake (a `# set: K=V` line gives
`--set` values), <name>.expected the rendered diagnostic. `DASC_UPDATE_GOLDEN=1` rewrites them.
"""

from __future__ import annotations

import collections
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from dasc.compiler.adapters import adapters
from dasc.compiler.pipeline import PASSES, check_constraints, compile_module, compile_space
from dasc.compiler.verify import verify
from dasc.dsl.parser import parse
from dasc.errors import ConstraintError, DascError, Sources

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import golden_check  # noqa: E402
from tests.strategies import cell_spaces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "spaces"
GOLDEN = ROOT / "tests" / "golden" / "compile"


def space(name: str, overrides=None):
    path = SPACES / name
    if not path.exists():
        pytest.skip(f"spaces/{name} is not there yet")
    return compile_space(str(path), overrides or {})


def choices_per_region(ir) -> dict[str, int]:
    return dict(collections.Counter(p.region for _, p in ir.choices()))


# ---------------------------------------------------------------------------- shipped spaces


def test_darts_space():
    ir = space("darts.das", {"C": 16, "layers": 8})
    cells = [r for r in ir.regions if r.cell]
    assert len(cells) == 8
    per = choices_per_region(ir)
    assert all(per[r.id] == 14 for r in cells)
    assert len({r.key for r in cells}) == 2
    assert len(ir.representatives()) == 3  # network + normal + reduction
    assert ir.node(ir.output).shape.c == dict(ir.params).get("classes", 10)


def test_nb201_space():
    ir = space("nb201.das")
    cells = [r for r in ir.regions if r.cell]
    assert len(cells) == 15
    assert all(choices_per_region(ir)[r.id] == 6 for r in cells)
    assert len({r.key for r in cells}) == 1


def test_mobile_space_needs_adapters():
    ir = space("mobile.das")
    assert adapters(ir)
    for _, node in ir.choices():
        assert len({c.shape for c in node.candidates}) == 1


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES.glob("*.das")))
def test_every_shipped_space_compiles_and_verifies(name):
    ir = space(name)
    verify(ir, "adapters")
    assert ir.choices()


def test_compile_time_grows_about_linearly():
    """×4 the layers of DARTS gives about ×4 the nodes (a sanity check on expansion)."""
    small = space("darts.das", {"layers": 5})
    large = space("darts.das", {"layers": 20})
    assert len(large.graph) < 4.5 * len(small.graph)


# ---------------------------------------------------------------------------- pipeline


def test_passes_are_named_and_verified():
    assert [p.name for p in PASSES] == ["shapes", "adapters"]
    ir = compile_module(parse("input i [1, 4, 4]\nnetwork { return relu(i) }", "t.das"))
    assert ir.node("out").shape is not None


def test_constraint_hook_is_optional_and_called():
    text = ("input i [1, 4, 4]\nnetwork { return choice({skip_connect, identity}, i) }\n"
            "constraint paths >= 1\n")
    m = parse(text, "t.das")
    ir = compile_module(m, constraints=False)
    if importlib.util.find_spec("dasc.compiler.constraints") is None:
        check_constraints(ir)  # no module yet: silently skipped
        return
    with pytest.raises(ConstraintError):
        compile_module(m)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell_spaces())
def test_random_cell_spaces_compile(s):
    ir = compile_module(parse(s.text, "r.das"), {}, constraints=False)
    cells = [r for r in ir.regions if r.cell]
    assert len(cells) == s.n_cells
    n_choices = sum(1 for n in s.nodes for e in n.edges if e.ops)
    per = choices_per_region(ir)
    assert all(per.get(r.id, 0) == n_choices for r in cells)
    assert per.get("network", 0) == (1 if s.net_ops else 0)
    assert len({r.key for r in cells}) == (1 if s.shared else s.n_cells)


# ---------------------------------------------------------------------------- golden errors

_SET = re.compile(r"^# set: (\w+)=(-?\d+)$", re.M)


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.das")))
def test_golden_diagnostics(name, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    text = (GOLDEN / f"{name}.das").read_text(encoding="utf-8")
    overrides = {k: int(v) for k, v in _SET.findall(text)}
    sources = Sources()
    with pytest.raises(DascError) as info:
        compile_space(f"{name}.das", overrides, sources)
    golden_check(f"compile/{name}.expected", info.value.render(sources) + "\n")


def test_enough_golden_cases():
    assert len(list(GOLDEN.glob("*.das"))) >= 12
