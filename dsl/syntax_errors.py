"""Lark's exceptions -> ParseError (placeholder, replaced below)."""
from dasc.errors import ParseError, Span


def translate(exc, text, file, lark):
    return ParseError(str(exc).splitlines()[0], Span(file, exc.line, exc.column, exc.line, exc.column + 1), None)
