"""`dasc` entry point: argument parsing, dispatch, and the one place errors become exit codes.

Exit codes: 0 success; 1 a check that found differences (`fmt --check`); 2 any user mistake
(a `DascError`: bad flag, bad `--set`, unreadable file, an error in the space); 130 Ctrl-C;
141 the reader of stdout went away (`dasc ... | head`), what a shell reports for SIGPIPE.
Every other exception is a bug in dasc and is allowed to surface with its traceback.

Each command lives in `cli/cmd_<name>.py` with `register(subparsers)` and `run(args, ctx)`;
adding one is a new file plus its name in `COMMANDS`. Command modules must stay cheap to import
(no torch at module level) because all of them are imported to build the parser.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import signal
import sys
from types import ModuleType
from typing import Sequence

from dasc import __version__
from dasc.cli.common import Context, parse_overrides
from dasc.errors import DascError, UsageError

COMMANDS = ("compile", "fmt", "render", "search", "derive", "profile", "train", "export")


class ArgParser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s: one line, a hint, exit 2 like every mistake.

    Plain argparse prints the whole usage block and exits from deep inside `parse_args`, which
    would bypass our error rendering and make `main()` impossible to call from tests.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            options = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), options, n=1)
            if close:
                hint = f"did you mean '{close[0]}'? ({hint})"
            message = message.replace(f" (choose from {m.group(2)})",
                                      f" (choose from {', '.join(options)})")
        raise UsageError(message, hint=hint)


def build_parser() -> ArgParser:
    parser = ArgParser(
        prog="dasc",
        description="A compiler for differentiable neural-architecture search spaces.",
        epilog="Run 'dasc COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"dasc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=ArgParser)
    for name in COMMANDS:
        _command_module(name).register(sub)
    return parser


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"dasc.cli.cmd_{name}")


def _unrecognized(parser: ArgParser, command: str | None, extras: list[str]) -> UsageError:
    """`unrecognized arguments`, with the closest real option as the hint when there is one."""
    sub = _subparser(parser, command)
    target = sub or parser
    options = [o for action in target._actions for o in action.option_strings]
    hint = f"see '{target.prog} --help'"
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=")[0], options, n=1)
            if close:
                hint = f"did you mean '{close[0]}'? ({hint})"
                break
    return UsageError(f"unrecognized arguments: {' '.join(extras)}", hint=hint)


def _subparser(parser: ArgParser, command: str | None) -> ArgParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one dasc command; returns the exit status instead of exiting (tests call this)."""
    try:
        status = _main(argv)
        if sys.stdout is not None:  # what is still buffered: a reader that left shows here
            sys.stdout.flush()
        return status
    except BrokenPipeError:
        # `dasc compile x --emit fx | head -1`: the reader left, which is no error worth a
        # traceback. Exit as a process killed by SIGPIPE does (128 + 13, as the shell reports
        # it), with stdout pointed at devnull so the interpreter's flush at exit cannot raise
        # again (the recipe of Python's signal documentation).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return SIGPIPE_STATUS


SIGPIPE_STATUS = 128 + 13


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Architecture counts are exact ints of any size ("however large", DESIGN.md); Python 3.11
    # refuses to print ints over 4,300 digits unless told otherwise, which made large spaces
    # crash `compile` in text and JSON output alike.
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    ctx = Context(json="--json" in argv)
    try:
        parser = build_parser()
        try:
            args, extras = parser.parse_known_args(argv)
        except SystemExit as done:  # --help and --version print and "exit"; nothing else does
            return done.code if isinstance(done.code, int) else 0
        if extras:
            raise _unrecognized(parser, getattr(args, "command", None), extras)
        ctx.json = bool(getattr(args, "json", False))
        args.overrides = parse_overrides(getattr(args, "set", None) or [])
        return int(_command_module(args.command).run(args, ctx) or 0)
    except DascError as err:
        _report(err, ctx)
        return 2
    except KeyboardInterrupt as stop:  # a search's Interrupted says how to resume
        said = str(stop) or "interrupted"
        status = getattr(stop, "status", 130)
        print(f"dasc: {said}", file=sys.stderr)
        if ctx.json:  # a script reading stdout gets a parseable answer here too
            print(json.dumps({"interrupted": {"signal": signal.Signals(status - 128).name,
                                              "status": status, "message": said}}, indent=2))
        return status
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        said = re.sub(r"^\[[^\]]*\]\s*(err == 0\.\s*)?", "", first)  # torch's source tag
        _report(UsageError(f"out of memory: {said}",
                           hint="lower --batch-size, or the space's size with --set "
                                "(channels, layers), or use a machine with more memory"), ctx)
        return 2


def _out_of_memory(exc: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError (CPU) or its OutOfMemoryError
    subclass (CUDA): the environment's limit, not a bug, so it gets a message, not a trace."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "out of memory" in text.lower() or \
        "can't allocate memory" in text


def _report(err: DascError, ctx: Context) -> None:
    """The rendered diagnostic on stderr; with `--json` also a JSON object on stdout, so a
    script reading stdout gets a parseable answer on failure too."""
    print(err.render(ctx.sources), file=sys.stderr)
    if ctx.json:
        span = err.span
        print(json.dumps({"error": {
            "kind": type(err).__name__.rstrip("_"),
            "message": err.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "col": span.col if span else None,
            "hint": err.hint,
            "notes": list(err.notes),
        }}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
