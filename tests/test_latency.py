"""Latency tables: profiling, validation (corrupt, stale, foreign, incomplete), prediction,
the derive report, and the CLI from `dasc profile` to `dasc derive --latency`.

Timings on a shared test machine are noise, so no test asserts how fast anything is; they
assert what the figures are made of: the prediction is exactly the sum of the derived
network's table entries (and the budget DP charges that very sum), the gap is measured minus
predicted, and every refusal names what differs and says to re-run `dasc profile`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dasc.compiler.arch import random_arch, write_arch
from dasc.compiler.budget import charged, derived_ticks, make_budget
from dasc.compiler.pipeline import compile_space
from dasc.compiler.prune import prune
from dasc.errors import UsageError
from dasc.runtime.latency import (entry_key, latency_report, open_table, predicted_ticks,
                                  read_table, space_ops)
from dasc.runtime.profiler import profile_space

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "spaces" / "digits.das")


@pytest.fixture(scope="module")
def digits():
    return compile_space(DIGITS)


@pytest.fixture(scope="module")
def table_file(digits, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lat") / "latency.json"
    path.write_text(json.dumps(profile_space(digits, batch=8, repeats=3, warmup=1)))
    return str(path)


def _edited(src: str, dst: Path, change) -> str:
    data = json.loads(Path(src).read_text())
    change(data)
    dst.write_text(json.dumps(data))
    return str(dst)


def test_entries_are_distinct_ops_without_none(digits):
    ops = space_ops(digits)
    keys = list(ops)
    assert len(keys) == len(set(keys))
    assert not any(k.startswith("none") for k in keys)
    assert sum(uses for _, _, uses in ops.values()) > len(keys)  # de-duplication happened
    call, shapes, _ = ops[keys[0]]
    assert entry_key(call, shapes) == keys[0]


def test_profile_writes_a_complete_described_table(digits, table_file):
    data = read_table(table_file)
    for field in ("device", "device_name", "torch", "dasc", "date", "batch", "space",
                  "fingerprint", "repeats", "warmup", "threads", "clock"):
        assert field in data, field
    assert data["space"] == "digits" and data["batch"] == 8 and data["clock"] == "wall"
    assert set(data["entries"]) == set(space_ops(digits))
    for e in data["entries"].values():
        assert e["min_ms"] <= e["p25_ms"] <= e["median_ms"] <= e["p75_ms"] <= e["max_ms"]
    assert open_table(table_file, digits).batch == 8


def test_prediction_is_the_sum_the_budget_charges(digits, table_file):
    table = open_table(table_file, digits)
    rule = make_budget(digits, "latency", 1e6, table.ticks)
    assert rule.exact
    rng = random.Random(3)
    for _ in range(8):
        arch = random_arch(digits, rng)
        total = predicted_ticks(prune(digits, arch), table.ticks)
        assert total == derived_ticks(digits, arch, table.ticks) == charged(digits, arch, rule)
        expect = sum(round(table.ms(p.call, [prune(digits, arch).node(x).shape
                                             for x in p.inputs]) * 1e6)
                     for _, p in prune(digits, arch).nodes() if hasattr(p, "call"))
        assert total == expect


def test_report_has_predicted_measured_and_gap(digits, table_file):
    arch = random_arch(digits, random.Random(0))
    rep = latency_report(digits, arch, table_file)
    assert {"predicted_ms", "measured_ms", "gap_ms", "gap_pct", "device"} <= set(rep)
    assert rep["predicted_ms"] > 0 and rep["measured_ms"] > 0
    assert rep["gap_ms"] == pytest.approx(rep["measured_ms"] - rep["predicted_ms"])
    assert rep["gap_pct"] == pytest.approx(100 * rep["gap_ms"] / rep["measured_ms"])


@pytest.mark.parametrize("text,match", [
    ('{"format": "dasc-latency", "version": 1, "entr', "corrupt"),
    ('{"format": "dasc-arch", "version": 1}', "not a dasc latency table"),
    ("", "corrupt"),
])
def test_corrupt_tables_are_usage_errors(tmp_path, digits, text, match):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        open_table(str(path), digits)


def test_malformed_entries_are_refused(tmp_path, digits, table_file):
    def nan(d):
        next(iter(d["entries"].values()))["median_ms"] = "fast"
    with pytest.raises(UsageError, match="corrupt"):
        open_table(_edited(table_file, tmp_path / "t.json", nan), digits)


def test_stale_table_for_other_parameters_is_refused(table_file):
    wider = compile_space(DIGITS, {"C": 16})
    with pytest.raises(UsageError, match="other parameters .*C=8.*C=16") as info:
        open_table(table_file, wider)
    assert "dasc profile" in info.value.hint and "--set C=16" in info.value.hint


def test_table_of_another_space_is_refused(table_file):
    pooling = compile_space(str(ROOT / "spaces" / "pooling.das"))
    with pytest.raises(UsageError, match="profiled for space 'digits'") as info:
        open_table(table_file, pooling)
    assert "dasc profile" in info.value.hint


def test_table_missing_an_entry_is_refused(tmp_path, digits, table_file):
    gone = []

    def drop(d):
        gone.append(sorted(d["entries"])[0])
        del d["entries"][gone[0]]
    path = _edited(table_file, tmp_path / "t.json", drop)
    with pytest.raises(UsageError, match="no entry") as info:
        open_table(path, digits)
    assert gone[0] in str(info.value) and "dasc profile" in info.value.hint


def test_table_from_another_device_is_refused_for_measuring(tmp_path, digits, table_file):
    def elsewhere(d):
        d["device_name"] = "Some Other CPU 9000"
    path = _edited(table_file, tmp_path / "t.json", elsewhere)
    assert open_table(path, digits).device_name == "Some Other CPU 9000"  # search may use it
    with pytest.raises(UsageError, match="Some Other CPU 9000") as info:
        latency_report(digits, random_arch(digits, random.Random(0)), path)
    assert "dasc profile" in info.value.hint


@pytest.mark.slow
def test_cli_profile_then_derive_with_latency(tmp_path, dasc, digits):
    table = tmp_path / "latency.json"
    res = dasc("profile", DIGITS, "--repeats", "3", "--batch", "16", "--clock", "cpu",
               "-o", str(table), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["entries"] == len(space_ops(digits)) and summary["clock"] == "cpu"
    arch = tmp_path / "arch.json"
    write_arch(str(arch), random_arch(digits, random.Random(1)), digits.name)
    res = dasc("derive", DIGITS, "--arch", str(arch), "--latency", str(table), "--json")
    assert res.returncode == 0, res.stderr
    lat = json.loads(res.stdout)["latency"]
    assert lat["device"] == "cpu" and lat["batch"] == 16 and lat["clock"] == "cpu"
    assert lat["gap_ms"] == pytest.approx(lat["measured_ms"] - lat["predicted_ms"])
    res = dasc("derive", DIGITS, "--set", "C=16", "--arch", str(arch), "--latency", str(table))
    assert res.returncode == 2
    assert "other parameters" in res.stderr and "dasc profile" in res.stderr
