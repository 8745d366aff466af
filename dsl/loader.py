"""Files -> one Module: reading (encoding, missing files), parsing, splicing `include`s.

Include rules (docs/language.md, "Includes"):

* `include "p.das"` is resolved relative to the directory of the file that says it; if there is
  no such file there, the shipped `spaces/` directory is tried, so any space can reuse them.
* After resolving `..` and symbolic links the file must lie inside the directory of the root
  file being compiled (or below it) or inside the shipped `spaces/` directory: compiling a
  space never reads files elsewhere on the machine.
* Each file is spliced at most once (a second include of it adds nothing, so two files may
  share a common one); a file that includes itself, directly or not, is an error naming the
  cycle.
* The declarations of an included file take the place of the `include`; their spans keep
  their own file, so diagnostics point into the right one.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from dasc.dsl import ast
from dasc.dsl.parser import parse
from dasc.errors import ParseError, Sources, Span, UsageError
from dasc.fsutil import input_problem


def shipped_spaces_dir() -> Path:
    """The installed `spaces/` package directory (package data)."""
    return Path(str(resources.files("dasc.spaces"))).resolve()


def load_space(path: str, sources: Sources) -> ast.Module:
    """Read, parse and resolve includes of the space at `path` (see the module docstring).

    A text the command already read (the CLI checks the SPACE argument first) is used as is:
    reading a pipe again (`dasc compile <(sed ... x.das)`) gives nothing, or blocks for ever on
    a named pipe, and a file edited in between must not be seen twice differently.
    """
    text = sources.text(path)
    if text is None:
        text = read_source(path, Span.of_file(path))
    return load_text(text, path, sources)


def load_text(text: str, file: str, sources: Sources) -> ast.Module:
    """Like `load_space` for a text already in memory, its includes relative to `file`."""
    sources.add(file, text)
    root = parse(text, file)
    base = Path(os.path.dirname(os.path.abspath(file))).resolve()
    loader = _Loader(sources, (base, shipped_spaces_dir()))
    me = Path(os.path.abspath(file)).resolve()
    loader.done.add(me)
    decls = loader.splice(root, [(me, file)])
    return ast.Module(tuple(decls), file, root.comments)


def read_source(path: str, span: Span) -> str:
    """A file's text as UTF-8; every way this can fail is a UsageError located at `span`."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{path} is a directory, not a .das file", span,
                         "give the path of a .das file")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}", span,
                         "check the path (relative paths start from the current directory)"
                         ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", span,
                         "check the file's permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start} (line {line})", span,
                         "save the file as UTF-8") from None


class _Loader:
    """One include resolution: the files already spliced and the directories allowed."""

    def __init__(self, sources: Sources, allowed: tuple[Path, ...]) -> None:
        self.sources = sources
        self.allowed = allowed
        self.done: set[Path] = set()

    def splice(self, module: ast.Module, chain: list[tuple[Path, str]]) -> list:
        out: list = []
        for decl in module.decls:
            if not isinstance(decl, ast.Include):
                out.append(decl)
                continue
            file, real = self.resolve(module.file, decl)
            reals = [r for r, _ in chain]
            if real in reals:
                names = [shown for _, shown in chain[reals.index(real):]]
                cycle = " -> ".join(names + [names[0]])
                raise ParseError(f"include cycle: {cycle}", decl.span,
                                 "remove one of these includes")
            if real in self.done:
                continue
            self.done.add(real)
            text = read_source(str(real), decl.path.span)
            self.sources.add(file, text)
            out += self.splice(parse(text, file), chain + [(real, file)])
        return out

    def resolve(self, including: str, decl: ast.Include) -> tuple[str, Path]:
        """The display path and the real path of an included file, checked against the rules."""
        rel = decl.path.value
        if not rel.strip():
            raise ParseError("empty include path", decl.path.span, 'write include "other.das"')
        file = os.path.normpath(os.path.join(os.path.dirname(including), rel))
        candidates = [Path(os.path.abspath(file))]
        if not os.path.isabs(rel):
            candidates.append(shipped_spaces_dir() / rel)
        for candidate in candidates:
            if input_problem(candidate) == "is a symlink loop":  # not "not found": it is there
                raise UsageError(f"included file {rel} is a symlink loop", decl.path.span,
                                 "point the link at a .das file (ls -l shows where it points)")
            if candidate.exists():
                real = candidate.resolve()
                break
        else:
            raise UsageError(f"included file not found: {rel}", decl.path.span,
                             f"looked for {file} (relative to the including file) and in the "
                             f"shipped spaces directory")
        if not any(real.is_relative_to(d) for d in self.allowed):
            raise UsageError(f"include escapes the space's directory: {rel} is {real}",
                             decl.path.span,
                             "includes must stay inside the directory of the file being "
                             "compiled or the shipped spaces/ directory; copy the file there")
        if real.is_dir():
            raise UsageError(f"{rel} is a directory, not a .das file", decl.path.span,
                             "include a .das file")
        if candidate is not candidates[0]:
            file = str(real)
        return file, real
