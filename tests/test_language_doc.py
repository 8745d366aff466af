"""Every example in docs/language.md parses (and every `das-error` example does not)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dasc.dsl.parser import parse
from dasc.dsl.printer import format_module
from dasc.errors import ParseError

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
_BLOCK = re.compile(r"^```(das|das-error)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks(kind: str) -> list[tuple[int, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in _BLOCK.finditer(text) if m.group(1) == kind]


def test_the_guide_has_examples():
    assert len(_blocks("das")) >= 20
    assert len(_blocks("das-error")) >= 5


@pytest.mark.parametrize("line, source", _blocks("das"), ids=lambda v: str(v)
                         if isinstance(v, int) else None)
def test_example_parses_and_formats(line, source):
    m = parse(source, f"language.md:{line}")
    assert parse(format_module(m), "fmt.das") == m


@pytest.mark.parametrize("line, source", _blocks("das-error"), ids=lambda v: str(v)
                         if isinstance(v, int) else None)
def test_error_example_fails(line, source):
    with pytest.raises(ParseError) as info:
        parse(source, f"language.md:{line}")
    assert info.value.hint


def test_quoted_diagnostic_is_current():
    """The rendered error shown in the guide is what the parser prints today."""
    from dasc.errors import Sources

    text = DOC.read_text(encoding="utf-8")
    shown = re.search(r"```text\n(bad\.das:.*?)```", text, re.S).group(1)
    source = _blocks("das-error")[0][1]
    sources = Sources()
    sources.add("bad.das", source)
    with pytest.raises(ParseError) as info:
        parse(source, "bad.das")
    assert info.value.render(sources) + "\n" == shown
