"""`dasc fmt SPACE... [--check]`: rewrite `.das` files in canonical form.

Formats each file on its own (includes are not followed: each included file is formatted when
it is named). Before anything is written, the formatted text is parsed again and must give the
same AST; a formatter bug must never corrupt a user's file, so a mismatch aborts the command
and leaves the file untouched. The rewrite is atomic. `--check` writes nothing, prints a unified
diff for each file that is not formatted and exits 1 (the convention of black and gofmt -l).
Only regular files are rewritten; `--check` also reads a pipe (`dasc fmt --check <(...)`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
from dataclasses import dataclass
from typing import Any

from dasc.cli.common import Context, check_space_file, new_command, require
from dasc.errors import UsageError
from dasc.fsutil import atomic_write_text


@dataclass(frozen=True)
class FmtConfig:
    files: tuple[str, ...]
    check: bool = False


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "fmt", help="format .das files canonically",
                    description="Rewrite .das files in canonical form, in place. With --check, "
                                "write nothing: print a diff and exit 1 if a file would change.")
    p.add_argument("files", metavar="SPACE", nargs="+", help="one or more .das files")
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 and print a diff if a file is not formatted")


def run(args: argparse.Namespace, ctx: Context) -> int:
    return fmt_command(FmtConfig(files=tuple(args.files), check=args.check), ctx)


def format_text(text: str, path: str) -> str:
    """The canonical text of one file, verified to parse back to the same AST."""
    parse = require("dasc.dsl.parser", "parse", "dasc fmt")
    format_module = require("dasc.dsl.printer", "format_module", "dasc fmt")
    module = parse(text, path)
    formatted = format_module(module)
    again = parse(formatted, path)
    if again != module:
        # Not the user's mistake: a printer bug. Refuse to write and surface it loudly.
        raise RuntimeError(f"dasc fmt: the formatted text of {path} does not parse back to the "
                           "same program; the file was left unchanged (this is a bug in dasc)")
    return formatted


def fmt_command(cfg: FmtConfig, ctx: Context) -> int:
    results: list[dict[str, Any]] = []
    for path in cfg.files:  # read and format everything first: one bad file writes nothing
        if not cfg.check:
            check_rewritable(path)
        text = check_space_file(path, ctx.sources)
        formatted = format_text(text, path)
        results.append({"file": path, "text": text, "formatted": formatted,
                        "changed": formatted != text})
    unformatted = [r for r in results if r["changed"]]
    if cfg.check:
        diffs = {r["file"]: unified_diff(r["text"], r["formatted"], r["file"])
                 for r in unformatted}
        if ctx.json:
            ctx.emit_json({"check": True, "files": [
                {"file": r["file"], "formatted": not r["changed"],
                 **({"diff": diffs[r["file"]]} if r["changed"] else {})} for r in results]})
        else:
            for r in unformatted:
                ctx.stdout.write(diffs[r["file"]])
            for r in unformatted:
                ctx.note(f"{r['file']}: not formatted (run: dasc fmt {r['file']})")
            if not unformatted:
                ctx.note(f"{len(results)} file{'s' * (len(results) != 1)} already formatted")
        return 1 if unformatted else 0

    for r in unformatted:
        atomic_write_text(r["file"], r["formatted"])
    if ctx.json:
        ctx.emit_json({"check": False, "files": [
            {"file": r["file"], "changed": r["changed"]} for r in results]})
    else:
        for r in results:
            ctx.note(f"{r['file']}: {'formatted' if r['changed'] else 'already formatted'}")
    return 0


def check_rewritable(path: str) -> None:
    """Refuse to rewrite a named pipe, `<(...)` or a device: the formatted text would go into
    the pipe, where nobody reads it, and 'formatted' would be a lie. Checked before reading, so
    a pipe is neither drained nor waited on. A missing file or a directory is left to
    `check_space_file`, which words those."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UsageError(f"cannot rewrite '{path}': it is not a regular file (a pipe or a "
                         "device), so the formatted text would be lost",
                         hint="use --check to print the changes instead, or save the text to a "
                              "real file and format that")


def unified_diff(old: str, new: str, path: str) -> str:
    """A `diff -u` style patch; a last line without newline is marked as `diff` marks it."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"{path} (current)", tofile=f"{path} (formatted)")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
