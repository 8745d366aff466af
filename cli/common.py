"""What every command shares: the per-invocation `Context`, `--set` parsing, input checks.

Commands get everything through `Context` and their own config dataclass, never through
module globals, so `main([...])` can be called many times in one process (the tests do) and a
future library API can call the same code paths.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from dasc.errors import DascError, Sources, Span, UsageError
from dasc.fsutil import input_problem

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"[+-]?[0-9]+\Z")
_MAX_DIGITS = 100  # dasc.dsl.ast.MAX_INT_DIGITS, without importing the front end here


@dataclass
class Context:
    """One invocation: where diagnostics quote source lines from, and how to print.

    `stdout`/`stderr` are looked up at print time (not captured at construction) so pytest's
    capsys and shell redirections both see what a command prints.
    """

    json: bool = False
    sources: Sources = field(default_factory=Sources)

    @property
    def stdout(self) -> TextIO:
        return sys.stdout

    @property
    def stderr(self) -> TextIO:
        return sys.stderr

    def out(self, text: str = "") -> None:
        """The command's result (human mode): stdout, so it can be piped."""
        print(text, file=self.stdout)

    def note(self, text: str) -> None:
        """Progress and side remarks ('wrote x.svg'): stderr, so stdout stays the result."""
        print(text, file=self.stderr)

    def emit_json(self, obj: Any) -> None:
        """One JSON document on stdout; Python ints stay exact (architecture counts are huge)."""
        print(json.dumps(obj, indent=2), file=self.stdout)


# ----------------------------------------------------------------------------- --set


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """`--set NAME=VALUE`, repeatable; values are validated by `parse_overrides`."""
    parser.add_argument(
        "--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
        help="override a `param` of the space (integer; repeatable, the last one wins)")


def parse_overrides(items: Iterable[str]) -> dict[str, int]:
    """`["C=16", "layers=8"]` -> `{"C": 16, "layers": 8}`; bad syntax is a `UsageError`.

    Only the syntax is checked here; whether the space has such a parameter is the compiler's
    business (it knows the declared names and can suggest the closest one).
    """
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise UsageError(f"bad --set value '{item}': expected NAME=VALUE",
                             hint="write e.g. --set C=16 (one parameter per --set)")
        if not _IDENT.match(name):
            raise UsageError(f"bad --set value '{item}': '{name}' is not a parameter name",
                             hint="parameter names are identifiers such as C or layers")
        if not _INT.match(value):
            raise UsageError(f"bad --set value '{item}': '{value}' is not an integer",
                             hint=f"parameters are integers, e.g. --set {name}=16")
        if len(value.lstrip("+-0")) > _MAX_DIGITS:
            shown = value if len(value) <= 24 else value[:24] + "..."
            raise UsageError(f"bad --set value '{name}={shown}': the integer is too large",
                             hint=f"integers in a space have at most {_MAX_DIGITS} digits")
        out[name] = int(value)
    return out


# ----------------------------------------------------------------------------- inputs


def check_space_file(path: str, sources: Sources | None = None) -> str:
    """Read the SPACE argument, with one clear message per way it can be wrong.

    The loader checks this too (it reads included files); checking the command-line argument
    here first gives the same wording for every command, including `fmt`, which must read the
    file without resolving includes. Returns the text and records it in `sources`.
    """
    p = Path(path)
    problem = input_problem(p, pipes=True)
    if problem == "does not exist":
        hint = "check the path"
        if not path.endswith(".das") and Path(path + ".das").exists():
            hint = f"did you mean {path}.das?"
        raise UsageError(f"no such file: '{path}'", hint=hint)
    if problem == "is a directory":
        raise UsageError(f"'{path}' is a directory, not a .das file",
                         hint=f"give a file inside it, e.g. {_example_in(p)}")
    if problem:
        raise UsageError(f"cannot read '{path}': it {problem}",
                         hint="give the path of a .das file (ls -l shows where a link points)")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read '{path}': {exc.strerror or exc}",
                         hint="check the file's permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                         span=Span(path, line, col, line, col + 1),
                         hint="save the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
    if sources is not None:
        sources.add(path, text)
    return text


def check_run_overrides(ir: Any, run_dir: str, config: object = None) -> None:
    """Refuse a space compiled with other `--set` values than the search run in `run_dir`: the
    run's α keys usually still match (cells are shared per stride), so `derive --run` would
    report the run's choices with the parameters and MACs of another network, and `render
    --run` would draw it. `config` is the run's config.json (read here when not given; a
    directory without one has nothing to compare). Call it after the α keys were matched to
    the space, so a run of another space fails on those instead."""
    if config is None:
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            return
        from dasc.runtime.rundir import read_json

        config = read_json(path)
    request = config.get("request") if isinstance(config, dict) else None
    ran = request.get("overrides") if isinstance(request, dict) else None
    if not isinstance(ran, dict):
        return
    params = dict(ir.params)
    differ = [k for k, v in ran.items() if k in params and params[k] != v]
    if differ:
        sets = " ".join(f"--set {k}={v}" for k, v in ran.items())
        here = ", ".join(f"{k}={params[k]}" for k in differ)
        raise UsageError(f"'{run_dir}' was searched with {sets}, but the space is compiled here "
                         f"with {here}", hint=f"pass the run's values: {sets}")


def _example_in(directory: Path) -> str:
    for child in sorted(directory.glob("*.das")):
        return str(child)
    return str(directory / "space.das")


MAX_NPROC = 256


def check_nproc(nproc: int | None) -> None:
    """`--nproc` of search and train, refused before anything is created: at least 1, and at
    most MAX_NPROC, since each worker is a whole Python process with its own copy of the model
    on this one machine (a typo such as --nproc 10000 would fork until memory ran out)."""
    if nproc is None:
        return
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}",
                         hint="use --nproc 2 for two worker processes")
    if nproc > MAX_NPROC:
        raise UsageError(f"--nproc {nproc} is more than the {MAX_NPROC} worker processes dasc "
                         "starts on one machine",
                         hint="each worker is a process with its own copy of the model: use at "
                              "most one per CPU core or GPU, and torchrun for several machines")


# ----------------------------------------------------------------------------- seams


def not_implemented(command: str, *, owner_hint: str = "") -> DascError:
    """The error every command stub raises until its stage lands."""
    hint = owner_hint or "this command is part of the contract but has not been built yet"
    return DascError(f"'dasc {command}' is not implemented yet", hint=hint)


def require(module: str, attr: str, feature: str) -> Any:
    """Import `module.attr` lazily, or say which feature is not there yet.

    Only a module that does not exist at all becomes a 'not implemented yet' error; a module
    that exists but fails to import is a bug and its exception propagates unchanged.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise DascError(f"{feature} is not implemented yet",
                        hint=f"it needs {module}.{attr}, which is not in this build of dasc")
    mod = importlib.import_module(module)
    if not hasattr(mod, attr):
        raise DascError(f"{feature} is not implemented yet",
                        hint=f"it needs {module}.{attr}, which is not in this build of dasc")
    return getattr(mod, attr)


def new_command(subparsers: Any, name: str, *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with the options every command has (`--json`)."""
    parser = subparsers.add_parser(name, help=help, description=description or help)
    parser.add_argument("--json", action="store_true",
                        help="print machine-readable JSON on stdout")
    return parser


def add_space_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="SPACE", help="a .das file")


def check_not_input(output: str, *inputs: str) -> None:
    """Refuse `-o` naming one of the command's inputs (`dasc compile x.das -o x.das` would
    replace the user's space with IR JSON)."""
    out = Path(output)
    for given in inputs:
        try:
            same = out.exists() and Path(given).exists() and out.samefile(given)
        except OSError:
            same = False
        if same:
            raise UsageError(f"refusing to overwrite the input '{given}' with -o '{output}'",
                             hint="choose another output file")
