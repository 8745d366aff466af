"""One small error hierarchy for every user mistake dasc can detect.

The CLI catches `DascError` (and nothing else), prints `render()` and exits with status 2; any
other exception escaping a command is a bug in dasc. Every error carries the source span that
caused it, so a mistake found deep in a pass (say a shape clash inside an adapter the compiler
inserted) still points at the line the user wrote.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @staticmethod
    def of_file(file: str) -> "Span":
        """A span for errors about a file as a whole (missing, unreadable, not UTF-8)."""
        return Span(file, 1, 1, 1, 1)


class Sources:
    """Texts of the files read in one command, so a diagnostic can quote the offending line.

    Kept per command rather than global; a span whose file is not here is re-read from disk,
    and a file that cannot be read is simply not quoted.
    """

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def add(self, file: str, text: str) -> None:
        self._texts[file] = text

    def text(self, file: str) -> str | None:
        """The text already read for `file` in this command, if any."""
        return self._texts.get(file)

    def line(self, file: str, lineno: int) -> str | None:
        text = self._texts.get(file)
        if text is None:
            try:
                # A span may name a multi-gigabyte checkpoint or dataset: not worth reading
                # the whole file to quote its first "line".
                info = Path(file).stat()
                # nor a FIFO (the read would block) or a device such as /dev/zero
                if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_QUOTED_FILE:
                    return None
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError):
                return None
            self._texts[file] = text
        lines = text.splitlines()
        if 1 <= lineno <= len(lines):
            return lines[lineno - 1]
        return None


_MAX_QUOTED_FILE = 4 << 20
_QUOTE_WIDTH = 120


def _clip(text: str, col: int, width: int) -> tuple[str, int, int]:
    """A window of a very long line (a minified or generated file) around the span, so one
    diagnostic never prints megabytes; returns the window, the caret column and width."""
    start = max(0, min(col - 1 - _QUOTE_WIDTH // 3, len(text) - _QUOTE_WIDTH))
    prefix = "..." if start else ""
    suffix = "..." if start + _QUOTE_WIDTH < len(text) else ""
    col = col - start + len(prefix)
    width = max(1, min(width, _QUOTE_WIDTH + len(prefix) - col + 1))
    return prefix + text[start:start + _QUOTE_WIDTH] + suffix, col, width


class DascError(Exception):
    """A mistake in what the user wrote or gave us: rendered as a located diagnostic, exit 2."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = tuple(notes)

    def render(self, sources: Sources | None = None) -> str:
        """`file:line:col: error: message`, the source line, a caret under the span, the hint."""
        sources = sources or Sources()
        out: list[str] = []
        where = f"{self.span}: " if self.span else "dasc: "
        out.append(f"{where}error: {self.message}")
        if self.span is not None:
            text = sources.line(self.span.file, self.span.line)
            if text is not None:
                text = text.expandtabs(4) if "\t" not in text[: self.span.col] else text
                width = 1
                if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                    width = self.span.end_col - self.span.col
                width = max(1, min(width, max(1, len(text) - self.span.col + 1)))
                col = self.span.col
                if len(text) > _QUOTE_WIDTH:
                    text, col, width = _clip(text, col, width)
                gutter = f"{self.span.line:>4} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) + col - 1) + "^" * width)
        for note in self.notes:
            out.append(f"note: {note}")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class ParseError(DascError):
    """The text is not in the language (syntax, bad token, bad encoding)."""


class NameError_(DascError):
    """A name that is not defined, defined twice, or used as the wrong kind of thing."""


class TypeError_(DascError):
    """Wrong arity, a tensor where an integer belongs, an unknown keyword argument."""


class ShapeError(DascError):
    """Tensors whose spatial sizes or channels cannot be reconciled."""


class ConstraintError(DascError):
    """A constraint that no architecture of the space can satisfy, or one that is malformed."""


class UsageError(DascError):
    """A bad command-line value, a missing or corrupt file, an output that would be clobbered."""


class NumericalError(DascError):
    """A search or training run that produced NaN/inf; the last good checkpoint is kept."""
