"""Loader: reading files, include splicing, cycles, escapes, encodings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dasc.dsl import ast
from dasc.dsl.loader import load_space, load_text, shipped_spaces_dir
from dasc.errors import ParseError, Sources, UsageError

SPACES = Path(__file__).resolve().parent.parent / "spaces"


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def kinds(m: ast.Module) -> list[tuple[str, str]]:
    return [(type(d).__name__, Path(d.span.file).name) for d in m.decls]


def test_include_is_spliced_in_place_with_its_own_spans(tmp_path):
    write(tmp_path / "lib" / "ops.das", "ops o = { a, b }\nparam k = 2\n")
    root = write(tmp_path / "main.das", 'space s\ninclude "lib/ops.das"\nparam c = 1\n')
    sources = Sources()
    m = load_space(root, sources)
    assert kinds(m) == [("SpaceDecl", "main.das"), ("OpSetDecl", "ops.das"),
                        ("ParamDecl", "ops.das"), ("ParamDecl", "main.das")]
    inc = m.decls[1]
    assert inc.span.file == os.path.join(str(tmp_path), "lib", "ops.das")
    assert (inc.span.line, inc.span.col) == (1, 1)
    assert sources.line(inc.span.file, 2) == "param k = 2"
    assert m.file == root


def test_nested_includes_resolve_relative_to_the_including_file(tmp_path):
    write(tmp_path / "a" / "b" / "deep.das", "param d = 4\n")
    write(tmp_path / "a" / "mid.das", 'include "b/deep.das"\nparam m = 3\n')
    root = write(tmp_path / "root.das", 'include "a/mid.das"\n')
    assert [d.name.id for d in load_space(root, Sources()).decls] == ["d", "m"]


def test_a_file_included_twice_is_spliced_once(tmp_path):
    write(tmp_path / "common.das", "param c = 1\n")
    write(tmp_path / "x.das", 'include "common.das"\nparam x = 1\n')
    root = write(tmp_path / "root.das", 'include "common.das"\ninclude "x.das"\n')
    assert [d.name.id for d in load_space(root, Sources()).decls] == ["c", "x"]


def test_include_cycle_is_reported_at_the_include(tmp_path):
    write(tmp_path / "a.das", 'include "b.das"\n')
    write(tmp_path / "b.das", 'param p = 1\ninclude "a.das"\n')
    root = write(tmp_path / "root.das", 'include "a.das"\n')
    sources = Sources()
    with pytest.raises(ParseError) as info:
        load_space(root, sources)
    err = info.value
    assert "include cycle" in err.message
    assert "a.das -> " in err.message and "b.das" in err.message
    assert Path(err.span.file).name == "b.das" and err.span.line == 2
    assert 'include "a.das"' in err.render(sources)


def test_self_include(tmp_path):
    root = write(tmp_path / "me.das", 'include "me.das"\n')
    with pytest.raises(ParseError, match="include cycle"):
        load_space(root, Sources())


def test_include_may_not_escape(tmp_path):
    write(tmp_path / "outside.das", "param o = 1\n")
    root = write(tmp_path / "proj" / "main.das", 'include "../outside.das"\n')
    with pytest.raises(UsageError, match="escapes") as info:
        load_space(root, Sources())
    assert info.value.hint and info.value.span.col == 9


def test_symlink_escape_is_caught(tmp_path):
    write(tmp_path / "secret.das", "param s = 1\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    try:
        (proj / "link.das").symlink_to(tmp_path / "secret.das")
    except OSError:
        pytest.skip("no symlinks here")
    root = write(proj / "main.das", 'include "link.das"\n')
    with pytest.raises(UsageError, match="escapes"):
        load_space(root, Sources())


def test_an_include_that_is_a_symlink_loop_says_so(tmp_path):
    try:
        (tmp_path / "a.das").symlink_to(tmp_path / "b.das")
        (tmp_path / "b.das").symlink_to(tmp_path / "a.das")
    except OSError:
        pytest.skip("no symlinks here")
    root = write(tmp_path / "main.das", 'include "a.das"\n')
    with pytest.raises(UsageError, match="a.das is a symlink loop") as info:
        load_space(root, Sources())
    assert info.value.span.col == 9 and "ls -l" in info.value.hint


def test_shipped_spaces_directory_is_a_fallback(tmp_path):
    root = write(tmp_path / "mine.das", 'include "pooling.das"\n')
    m = load_space(root, Sources())
    assert isinstance(m.decls[0], ast.SpaceDecl) and m.decls[0].name.id == "pooling"
    assert Path(m.decls[0].span.file).resolve() == (shipped_spaces_dir() / "pooling.das")


def test_missing_included_file(tmp_path):
    root = write(tmp_path / "main.das", 'space s\ninclude "nope.das"\n')
    with pytest.raises(UsageError, match="not found") as info:
        load_space(root, Sources())
    assert info.value.span.line == 2


def test_including_a_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    root = write(tmp_path / "main.das", 'include "sub"\n')
    with pytest.raises(UsageError, match="directory"):
        load_space(root, Sources())


def test_empty_include_path(tmp_path):
    root = write(tmp_path / "main.das", 'include ""\n')
    with pytest.raises(ParseError, match="empty include"):
        load_space(root, Sources())


def test_syntax_error_in_included_file_points_there(tmp_path):
    write(tmp_path / "bad.das", "param = 3\n")
    root = write(tmp_path / "main.das", 'include "bad.das"\n')
    sources = Sources()
    with pytest.raises(ParseError) as info:
        load_space(root, sources)
    assert Path(info.value.span.file).name == "bad.das"
    assert "param = 3" in info.value.render(sources)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such file") as info:
        load_space(str(tmp_path / "nope.das"), Sources())
    assert info.value.span.line == 1


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        load_space(str(tmp_path), Sources())


def test_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "latin1.das"
    path.write_bytes(b"space s\n# caf\xe9\n")
    with pytest.raises(UsageError) as info:
        load_space(str(path), Sources())
    assert "not UTF-8" in info.value.message
    assert "0xe9" in info.value.message and "offset 13" in info.value.message
    assert "line 2" in info.value.message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path):
    path = Path(write(tmp_path / "locked.das", "space s\n"))
    path.chmod(0)
    try:
        with pytest.raises(UsageError, match="cannot read"):
            load_space(str(path), Sources())
    finally:
        path.chmod(0o644)


def test_unreadable_file_even_as_root(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.das", "space s\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(UsageError, match="cannot read .*Permission denied"):
        load_space(path, Sources())


def test_utf8_with_bom_and_crlf(tmp_path):
    path = tmp_path / "win.das"
    path.write_bytes("\ufeffspace s\r\nparam C = 16  # café\r\n".encode("utf-8"))
    m = load_space(str(path), Sources())
    assert [type(d).__name__ for d in m.decls] == ["SpaceDecl", "ParamDecl"]
    assert m.decls[1].span.line == 2


def test_load_text_registers_sources(tmp_path):
    sources = Sources()
    m = load_text("space s\n", str(tmp_path / "virtual.das"), sources)
    assert m.decls == (ast.SpaceDecl(ast.Name("s")),)
    assert sources.line(str(tmp_path / "virtual.das"), 1) == "space s"


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.das")), ids=lambda p: p.name)
def test_shipped_spaces_load(path):
    m = load_space(str(path), Sources())
    assert sum(isinstance(d, ast.NetworkDecl) for d in m.decls) == 1
    assert sum(isinstance(d, ast.InputDecl) for d in m.decls) == 1
