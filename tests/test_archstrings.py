"""DARTS genotypes and NAS-Bench-201 strings in and out of the shipped spaces."""

from __future__ import annotations

import pytest

from dasc.compiler import archstrings
from dasc.compiler.arch import random_arch
from dasc.compiler.pipeline import compile_space
from dasc.errors import Sources, UsageError
from conftest import ROOT

GENOTYPES = ROOT / "spaces" / "genotypes"


@pytest.fixture(scope="module")
def darts_ir():
    return compile_space(str(ROOT / "spaces" / "darts.das"), {"C": 36, "layers": 20}, Sources())


@pytest.fixture(scope="module")
def nb201_ir():
    return compile_space(str(ROOT / "spaces" / "nb201.das"), {}, Sources())


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "PC_DARTS"])
def test_genotype_round_trip(darts_ir, name):
    text = (GENOTYPES / f"{name}.txt").read_text()
    arch = archstrings.read_any(str(GENOTYPES / f"{name}.txt"), darts_ir)
    again = archstrings.format_arch(darts_ir, arch, "darts")
    assert archstrings.parse_genotype(again).canonical() == archstrings.parse_genotype(text).canonical()
    assert archstrings.read_any(again, darts_ir) == arch


def test_genotype_accepts_range_concat(darts_ir):
    text = (GENOTYPES / "DARTS_V2.txt").read_text().replace("[2, 3, 4, 5]", "range(2, 6)")
    assert archstrings.read_any(text, darts_ir) == archstrings.read_any(
        str(GENOTYPES / "DARTS_V2.txt"), darts_ir)


@pytest.mark.parametrize("path", sorted(GENOTYPES.glob("nb201_*.txt")), ids=lambda p: p.stem)
def test_nb201_round_trip_is_the_identity(nb201_ir, path):
    text = path.read_text().strip()
    arch = archstrings.read_any(text, nb201_ir)
    assert archstrings.format_arch(nb201_ir, arch, "nb201") == text


def test_every_nb201_arch_formats_and_parses_back(nb201_ir):
    import random

    rng = random.Random(0)
    for _ in range(50):
        arch = random_arch(nb201_ir, rng)
        assert archstrings.parse_nb201(nb201_ir, archstrings.format_nb201(nb201_ir, arch)) == arch


@pytest.mark.parametrize("text, message", [
    ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], reduce=[], reduce_concat=[2])",
     "edges per cell"),
    ("Genotype(normal=[", "expected"),
    ("Genotype(normal=__import__('os'))", "expected"),
])
def test_bad_genotypes_are_usage_errors(darts_ir, text, message):
    with pytest.raises(UsageError, match=message):
        archstrings.read_any(text, darts_ir)


@pytest.mark.parametrize("text, message", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 nodes"),
    ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input index below 1"),
    ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "does not fit"),
])
def test_bad_nb201_strings_are_usage_errors(nb201_ir, text, message):
    with pytest.raises(UsageError, match=message):
        archstrings.read_any(text, nb201_ir)


def test_strings_for_the_wrong_space_are_refused(darts_ir, nb201_ir):
    with pytest.raises(UsageError, match="NAS-Bench-201 shape"):
        archstrings.read_any((GENOTYPES / "nb201_best.txt").read_text(), darts_ir)
    with pytest.raises(UsageError, match="DARTS shape"):
        archstrings.read_any(str(GENOTYPES / "DARTS_V2.txt"), nb201_ir)
