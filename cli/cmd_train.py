"""`dasc train SPACE --arch ARCH --data digits [--epochs N] [--weights CKPT] -o TRAIN_DIR`.

Train the network an architecture derives from the space, from scratch (or from a search's
supernet weights with `--weights`), and report its test accuracy. Builds a `TrainConfig`
from the flags and hands everything to `dasc.runtime.train`; torch is imported only inside
`run`, so `dasc --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from dasc import __version__
from dasc.cli.common import Context, add_set_option, check_nproc, check_space_file, new_command
from dasc.cli.train_resume import (
    TRAIN_FLAGS, check_fresh_args, last_state, request_record, resume_args, resume_detail,
)
from dasc.errors import UsageError
from dasc.fsutil import LOCK_FILE, DirLock

MARKER = "config.json"


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "train", help="train a derived network from scratch",
                    description="Train the network an architecture derives from the space and "
                                "report its test accuracy.")
    p.add_argument("space", metavar="SPACE", nargs="?", help="a .das file (not with --resume)")
    p.add_argument("--arch", metavar="ARCH",
                   help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                        "(literal or file)")
    p.add_argument("--data", metavar="NAME", help="digits (bundled) or a .npz file")
    p.add_argument("--epochs", type=int, metavar="N", help="training epochs (default 30)")
    p.add_argument("--batch-size", type=int, metavar="B", help="mini-batch size (default 64)")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="initial learning rate, cosine-annealed to 0 (default 0.025)")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--weights", metavar="CKPT",
                   help="start from a search run's supernet weights (its checkpoint or RUN_DIR) "
                        "or from a dasc train checkpoint")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel worker processes (global batch split over them)")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --nproc: batch-norm statistics over the global batch, not per process")
    p.add_argument("--force", action="store_true", help="replace an existing TRAIN_DIR")
    p.add_argument("--resume", metavar="TRAIN_DIR",
                   help="continue an interrupted training exactly, from its last finished epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="TRAIN_DIR", help="the directory to create")


def prepare_train_dir(path: Path, force: bool) -> None:
    """Create TRAIN_DIR; an existing non-empty one is replaced only with --force, and only
    when it looks like a dasc output directory (has config.json), never a random folder."""
    span = None  # a directory has no line to point at: the message names it
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory", span, "choose another -o path")
    if path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()):
        if not force:
            unfinished = (path / MARKER).is_file() and not (path / "summary.json").is_file()
            raise UsageError(f"output directory {path} already exists", span,
                             f"continue its training with: dasc train --resume {path}; or pass "
                             "--force to replace it, or choose another -o" if unfinished else
                             "pass --force to replace it, or choose another -o")
        if not (path / MARKER).is_file():
            raise UsageError(f"{path} is not empty and is not a dasc output directory; "
                             "refusing to delete it even with --force", span,
                             "choose an empty or new -o path")
        shutil.rmtree(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"cannot create {path}: {parent} is a file, not a directory", span,
                         "choose an -o path inside a directory")
    if not parent.is_dir():
        raise UsageError(f"cannot create {path}: directory {parent} does not exist", span,
                         f"create it first (mkdir -p {parent}) or choose another -o")
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}", span,
                         "choose a writable -o path") from None


def _progress(total: int, enabled: bool):
    """A tqdm bar on stderr: epoch, running loss and accuracy, then validation accuracy."""
    if not enabled:
        return (lambda _: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(info: dict) -> None:
        if info.get("done"):
            bar.set_postfix(loss=f"{info['train_loss']:.3f}", acc=f"{info['train_acc']:.2f}",
                            val=f"{info['val_acc']:.3f}")
            return
        bar.set_description(f"epoch {info['epoch']}/{total}")
        bar.set_postfix(loss=f"{info['loss']:.3f}", acc=f"{info['train_acc']:.2f}")
        bar.update(1)

    return update, bar.close


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Ctrl-C or SIGTERM anywhere in a training that has begun says how to resume it."""
    from dasc.runtime.stopping import sigterm_raises

    with sigterm_raises():
        try:
            return _run(args, ctx)
        except KeyboardInterrupt as stop:
            raise _resumable(stop, args.output or args.resume) from None


def _resumable(stop: KeyboardInterrupt, output: str | None) -> KeyboardInterrupt:
    """The stop as the message that says how to resume, where there is something to resume
    (a TRAIN_DIR with config.json and no summary.json) and this process speaks for the run."""
    from dasc.runtime import distributed
    from dasc.runtime.stopping import Interrupted

    if isinstance(stop, Interrupted) or distributed.WorldInfo.from_env().launched or not output:
        return stop
    out = Path(output)
    if not (out / MARKER).is_file() or (out / "summary.json").is_file():
        return stop
    return Interrupted(out, getattr(stop, "signum", signal.SIGINT), "train", resume_detail(out))


def _run(args: argparse.Namespace, ctx: Context) -> int:
    from dasc.compiler.arch import read_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.compiler.prune import prune
    from dasc.runtime import distributed
    from dasc.runtime.data import check_fits, check_same_data, load_dataset
    from dasc.runtime.rundir import sweep_temporaries
    from dasc.runtime.train import TrainConfig

    check_nproc(args.nproc)
    world = distributed.WorldInfo.from_env()
    if world.launched:  # a worker (of --nproc or torchrun): never launches again
        distributed.init_from_env()
    if args.resume:
        args, stored = resume_args(args, ctx)
        check_nproc(args.nproc)  # the stored one too: a hand-edited config.json is input
    else:
        check_fresh_args(args)
        check_space_file(args.space, ctx.sources)
        stored = {}
    config = TrainConfig(**{k: getattr(args, k) for k in TRAIN_FLAGS
                            if getattr(args, k) is not None})
    out = Path(args.output)
    ir = compile_space(args.space, args.overrides, ctx.sources)
    arch = read_arch(args.arch, ir)
    derived = prune(ir, arch)
    data = load_dataset(args.data)
    if args.resume:
        check_same_data(data, stored["request"].get("data_sha256"), args.data, args.output,
                        "training")
    output = ir.node(ir.output).shape
    shape = ir.node(ir.input).shape
    check_fits(data, (shape.c, shape.h, shape.w), output.c if output else None, ir.span)
    if not world.launched and (args.nproc or 1) > 1:  # before TRAIN_DIR exists
        from dasc.runtime.search import split_indices

        train_idx, _ = split_indices(len(data.x_train), 1 - config.val_fraction, config.seed)
        distributed.check_nproc_fits_batch(args.nproc, min(config.batch_size, len(train_idx)))
    init, weights, last = None, None, None
    source = stored["request"]["weights"] if args.resume else args.weights
    if args.resume:  # the weights it started from are in last.pt, once an epoch finished
        weights = stored["weights"]
        last = distributed.from_rank0(lambda: last_state(out, derived))
    if source and last is None:  # read by rank 0, handed to the others
        init, weights = distributed.from_rank0(
            lambda: _inherited(source, ir, derived, arch, config.seed))
    meta = {"space": ir.name, "space_file": stored.get("space_file", args.space),
            "overrides": dict(args.overrides), "arch": arch.to_json(ir.name), "data": args.data,
            "weights": weights, "dasc_version": __version__,
            "request": stored.get("request") or request_record(
                args, ctx.sources, arch.to_json(ir.name), args.nproc or world.world,
                data.digest())}
    lock = DirLock(enabled=not os.environ.get(distributed.PARENT_ENV))

    def prepare() -> None:
        lock.take(out, "training")  # before replacing it (--force) or sweeping its temporaries
        if args.resume:
            sweep_temporaries(out)  # what a kill mid-write left beside the intact files
        else:
            prepare_train_dir(out, args.force)
        lock.take(out, "training")

    try:
        if not world.launched and (args.nproc or 1) > 1:
            prepare()
            result, processes = _launch(args, out, bool(args.quiet or ctx.json)), args.nproc
        else:
            distributed.from_rank0(prepare)
            result, processes = _train_here(args, ctx, derived, data, config, out, init, meta,
                                            world, last), world.world
    finally:
        lock.release()
    from dasc.runtime.driver import prints_result

    if not prints_result():  # another rank, or a worker whose --nproc parent prints
        return 0
    if ctx.json:
        ctx.emit_json({"space": ir.name, "data": args.data, **result.to_json(),
                       "weights": weights, "config": config.to_json(), "processes": processes})
        return 0
    ctx.out(f"test accuracy {result.test_acc:.4f} (best epoch {result.best_epoch} of "
            f"{result.epochs} by validation accuracy {result.val_acc:.4f}; last epoch "
            f"{result.test_acc_last:.4f})")
    ctx.out(f"params {result.params:,}  MACs {result.macs:,}  time {result.seconds:.1f}s"
            + (f"  ({processes} processes)" if processes > 1 else ""))
    if weights:
        ctx.out(f"started from {weights['source']} weights {weights['weights']} "
                f"({weights['copied']} tensors inherited, {weights['fresh']} fresh)")
    ctx.note(f"wrote {out}/ (best.pt, last.pt, metrics.jsonl, summary.json)")
    return 0


def _inherited(source: str, ir, derived, arch, seed: int):
    import torch

    from dasc.runtime.inherit import load_weights
    from dasc.runtime.lower import lower

    torch.manual_seed(seed)  # the fresh part of the state, as train() would draw it
    return load_weights(source, ir, derived, arch, lower(derived).state_dict())


def _train_here(args, ctx: Context, derived, data, config, out: Path, init, meta, world, last):
    from dasc.runtime import distributed
    from dasc.runtime.search import Parallel
    from dasc.runtime.stopping import Interrupted, exit_stopped_worker
    from dasc.runtime.train import train

    parallel = Parallel(world.rank, world.world, distributed.average_across_ranks,
                        distributed.sync_step, bool(args.sync_bn))
    update, close = _progress(config.epochs, not (args.quiet or ctx.json) and parallel.main)
    die, steps = distributed.die_hook(world.rank), [0]

    def on_step(info: dict) -> None:
        update(info)
        if not info.get("done"):
            steps[0] += 1
            die(steps[0])

    try:
        with distributed.peer_guard(world.rank, world.world,
                                    f"continue with: dasc train --resume {out}"):
            return train(derived, data, config, out, on_step, init=init, meta=meta,
                         parallel=parallel, resume=last)
    except Interrupted as stopped:
        if not world.launched:
            raise
        from dasc.runtime.driver import prints_result

        exit_stopped_worker(stopped, prints_result())
    finally:
        close()
        distributed.shutdown()


def _launch(args, out: Path, quiet: bool):
    """The parent of `--nproc N`: the workers run this same command; rank 0 writes."""
    from dasc.runtime import distributed
    from dasc.runtime.rundir import read_json
    from dasc.runtime.stopping import Interrupted
    from dasc.runtime.train import TrainResult

    try:
        code = distributed.launch(args.nproc, _worker_argv(args, quiet))
    except distributed.LaunchStopped as stop:  # the workers stopped after the same step
        if not (out / MARKER).is_file():  # rank 0 had not begun: nothing to resume
            raise Interrupted(out, stop.signum, "train", advice="nothing was trained yet; run "
                              f"the same command again (with --force: {out} exists)") from None
        if not (out / "summary.json").is_file():  # (else the signal came after the end)
            raise Interrupted(out, stop.signum, "train", resume_detail(out)) from None
        code = 0
    except distributed.WorkerFailed as err:
        raise UsageError(err.message, hint=f"continue with: dasc train --resume {out}") from None
    if code != 0:
        raise UsageError("the distributed training failed (see the workers' messages above)",
                         hint=f"fix the cause and continue with: dasc train --resume {out}")
    summary = read_json(out / "summary.json")
    names = TrainResult.__dataclass_fields__
    return TrainResult(**{k: v for k, v in summary.items() if k in names})  # type: ignore[union-attr]


def _worker_argv(args, quiet: bool) -> list[str]:
    """This command's flags again, for the workers (the parent has prepared TRAIN_DIR)."""
    if args.resume:
        return (["train", "--resume", args.output] + (["--quiet"] if quiet else [])
                + (["--sync-bn"] if args.sync_bn else []))
    argv = ["train", args.space, "--arch", args.arch, "--data", args.data, "-o", args.output]
    for flag in TRAIN_FLAGS:
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for item in args.set or []:
        argv += ["--set", item]
    if args.weights:
        argv += ["--weights", args.weights]
    argv += ["--quiet"] if quiet else []
    argv += ["--sync-bn"] if args.sync_bn else []
    return argv
