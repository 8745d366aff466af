"""`dasc train --resume TRAIN_DIR`: the request a training started with, and where it stopped.

A retraining runs for as long as the search before it (DARTS: 600 epochs), so it must survive
a kill or a pre-empted node as a search does. config.json records the whole request — the
space's text too, so an edited, deleted or piped space file cannot strand the run — and
last.pt carries the optimizer, the schedule and the best model so far at the end of every
epoch (`runtime.train`). A resume continues after that epoch and ends with the same bits as a
training that never stopped.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dasc.cli.common import Context
from dasc.errors import Sources, Span, UsageError
from dasc.fsutil import check_writable_dir

TRAIN_FLAGS = ("epochs", "batch_size", "lr", "device", "seed")
_FRESH_ONLY = ("space", "arch", "data", "output", "weights", "set", "force", *TRAIN_FLAGS)


def check_fresh_args(args: argparse.Namespace) -> None:
    """What a new training needs (argparse cannot require them: --resume needs none)."""
    for name, flag in (("space", "SPACE"), ("arch", "--arch ARCH"), ("data", "--data NAME"),
                       ("output", "-o TRAIN_DIR")):
        if not getattr(args, name):
            raise UsageError(f"dasc train needs {flag} (or --resume TRAIN_DIR)",
                             hint="e.g. dasc train spaces/digits.das --arch runs/digits/arch.json "
                                  "--data digits -o trained/digits")


def request_record(args: argparse.Namespace, sources: Sources, arch: dict, processes: int,
                   data_digest: str) -> dict:
    """What config.json keeps so that `--resume` needs nothing else; paths are absolute, so it
    works from any directory. `processes` is the world size (rank 0 of `--nproc N` writes this
    without the flag), so that resuming as told is resuming exactly."""
    return {"space": os.path.abspath(args.space), "space_text": sources.text(args.space) or "",
            "arch": arch,
            "data": args.data if args.data == "digits" else os.path.abspath(args.data),
            "overrides": dict(args.overrides),
            "flags": {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None},
            "weights": os.path.abspath(args.weights) if args.weights else None,
            "sync_bn": bool(args.sync_bn), "nproc": processes, "data_sha256": data_digest}


def resume_args(args: argparse.Namespace, ctx: Context) -> tuple[argparse.Namespace, dict]:
    """The arguments of the training TRAIN_DIR holds (read by rank 0 in a worker), with the
    space's text recorded in `ctx.sources` under its original name, so includes still resolve
    beside it; and what config.json said about the weights it started from."""
    from dasc.runtime import distributed

    given = [name for name in _FRESH_ONLY if getattr(args, name, None)]
    if given:
        raise UsageError("--resume takes the space, architecture, data and settings from "
                         f"TRAIN_DIR (also given: {', '.join(_flag(g) for g in given)})",
                         hint=f"run just: dasc train --resume {args.resume}")
    record = distributed.from_rank0(lambda: _read_record(Path(args.resume)))
    request = record["request"]
    ctx.sources.add(request["space"], request["space_text"])
    resumed = argparse.Namespace(**vars(args))
    resumed.space, resumed.data, resumed.output = request["space"], request["data"], args.resume
    resumed.arch = json.dumps(request["arch"])
    resumed.overrides = dict(request["overrides"])
    for flag in TRAIN_FLAGS:
        setattr(resumed, flag, request["flags"].get(flag))
    resumed.nproc = args.nproc or request["nproc"]
    if args.sync_bn and not request["sync_bn"]:
        raise UsageError(f"the training in {args.resume} was started without --sync-bn; a "
                         "resumed training keeps the settings it started with",
                         hint=f"resume without it: dasc train --resume {args.resume}")
    resumed.sync_bn = bool(request["sync_bn"])
    resumed.weights = None  # in last.pt now; re-read only when no epoch finished
    return resumed, {"request": request, "weights": record.get("weights"),
                     "space_file": record.get("space_file", request["space"])}


def _flag(name: str) -> str:
    return {"space": "SPACE", "output": "-o", "set": "--set"}.get(
        name, f"--{name.replace('_', '-')}")


def _read_record(train_dir: Path) -> dict:
    from dasc.runtime.rundir import read_json

    span = Span.of_file(str(train_dir))
    path = train_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"{train_dir} is not a dasc train directory (no config.json)", span,
                         "pass the TRAIN_DIR an earlier `dasc train -o` created")
    record = read_json(path)
    if not isinstance(record, dict) or "arch" not in record:
        if isinstance(record, dict) and "request" in record:
            raise UsageError(f"{train_dir} is a `dasc search` run directory, not a training",
                             span, f"resume a search with: dasc search --resume {train_dir}")
        raise UsageError(f"{path} is damaged or not a dasc train config", Span.of_file(str(path)),
                         f"train again with --force -o {train_dir}")
    if "request" not in record:
        raise UsageError(f"{train_dir} was written by a dasc that could not resume trainings",
                         span, f"train again with --force -o {train_dir}")
    problem = _request_problem(record["request"]) or _meta_problem(record)
    if problem:
        raise UsageError(f"{path} is damaged ({problem})", Span.of_file(str(path)),
                         f"train again with --force -o {train_dir}")
    if (train_dir / "summary.json").is_file():
        raise UsageError(f"the training in {train_dir} has finished; there is nothing to resume",
                         span, f"its figures are in {train_dir / 'summary.json'}; train again "
                               "with --force (or another -o) for a new run")
    check_writable_dir(train_dir, span)
    return record


_REQUEST_TYPES: dict[str, tuple[type, ...]] = {
    "space": (str,), "space_text": (str,), "arch": (dict,), "data": (str,), "overrides": (dict,),
    "flags": (dict,), "weights": (str, type(None)), "sync_bn": (bool,), "nproc": (int,)}
_FLAG_TYPES: dict[str, tuple[type, ...]] = {
    "epochs": (int,), "batch_size": (int,), "lr": (int, float), "device": (str,), "seed": (int,)}


def _request_problem(request: object) -> str | None:
    """What is wrong with a stored request (a hand-edited or torn config.json), if anything:
    each value must have the type the command line would have given it."""
    if not isinstance(request, dict):
        return "`request` is not an object"
    for key, types in _REQUEST_TYPES.items():
        if key not in request:
            return f"`request.{key}` is missing"
        if not isinstance(request[key], types) or (bool not in types
                                                   and isinstance(request[key], bool)):
            return f"`request.{key}` has the wrong type"
    if any("\x00" in request[k] for k in ("space", "data")) or "\x00" in (request["weights"] or ""):
        return "a path holds a NUL character"
    if not request["space_text"].strip():  # it compiled once: an empty text was edited in
        return "`request.space_text` is empty"
    if not isinstance(request.get("data_sha256", ""), (str, type(None))):
        return "`request.data_sha256` has the wrong type"
    for key, value in request["overrides"].items():
        if not isinstance(value, int) or isinstance(value, bool):
            return f"`request.overrides.{key}` is not an integer"
    for key, value in request["flags"].items():
        if key not in _FLAG_TYPES:
            return f"`request.flags.{key}` is not a training setting"
        if not isinstance(value, _FLAG_TYPES[key]) or isinstance(value, bool):
            return f"`request.flags.{key}` has the wrong type"
    return None


def _meta_problem(record: dict) -> str | None:
    """config.json's own record of the run that the report and summary.json reuse."""
    weights = record.get("weights")
    if weights is not None and not (isinstance(weights, dict) and all(
            isinstance(weights.get(k), t) for k, t in (("source", str), ("weights", str),
                                                       ("copied", int), ("fresh", int)))):
        return "`weights` is not the record of inherited weights"
    if not isinstance(record.get("space_file", ""), str):
        return "`space_file` is not a path"
    return None


def last_state(train_dir: Path, derived) -> dict | None:
    """last.pt with its resume state, checked against the derived network; None when no
    epoch has finished yet (the training starts again from the beginning, in place)."""
    from dasc.runtime.checkpoint import fingerprint, load_checkpoint

    path = train_dir / "last.pt"
    if not path.exists():
        return None
    state = load_checkpoint(path, fingerprint(derived),
                            "put back what changed since the training started: a file the space "
                            "includes, or the --set values in its config.json (which keeps the "
                            "space's own text)")
    if not isinstance(state.get("resume"), dict) or state.get("kind") != "train":
        raise UsageError(f"{path} holds no resume state (it is not the last.pt of a dasc "
                         "train, or an older dasc wrote it)",
                         Span.of_file(str(path)), f"train again with --force -o {train_dir}")
    return state


def resume_detail(train_dir: Path) -> str:
    """' (from the end of epoch N)' for the message of an interrupted training."""
    import torch

    try:
        epoch = int(torch.load(train_dir / "last.pt", map_location="cpu",
                               weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError):  # none yet
        return " (from the start)"
    return f" (from the end of epoch {epoch})"
