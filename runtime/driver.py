"""The `dasc search` job from a request dataclass: compile, load data, search, finish.

The CLI builds a `SearchRequest` and calls `run_search`; nothing here reads argv. A resumed run
rebuilds its request from the run directory's config.json, so `--resume RUN_DIR` needs nothing
else and cannot silently continue with different settings.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Callable

from dasc.errors import Sources, UsageError
from dasc.runtime.run_record import (
    CHANGED_SINCE_START, SearchRequest, config_record, stored_config,
)


def _compile(space: str, overrides: dict[str, int], sources: Sources):
    from dasc.compiler.pipeline import compile_space

    return compile_space(space, overrides, sources)


def _classes(ir) -> int | None:
    return ir.node(ir.output).shape.c if ir.node(ir.output).shape else None


def _progress_bar(total_epochs: int, enabled: bool) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """A tqdm bar on stderr showing epoch, losses, accuracy and temperature."""
    if not enabled:
        return (lambda _: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(info: dict) -> None:
        bar.set_description(f"epoch {info['epoch']}/{total_epochs}")
        bar.set_postfix(loss=f"{info['loss']:.3f}", val=f"{info['val_loss']:.3f}",
                        acc=f"{info['train_acc']:.2f}", tau=f"{info['tau']:.3g}")
        bar.update(1)

    return update, bar.close


def run_search(request: SearchRequest, sources: Sources, resume: bool = False) -> dict:
    """Run (or resume) a search; returns the summary dict that the CLI prints.

    Three ways in: one process; the parent of `--nproc N`, which prepares RUN_DIR, writes
    config.json and launches N workers running `dasc search --resume RUN_DIR`; and a worker
    (launched by that parent or by torchrun), where rank 0 alone touches the run directory and
    hands what it read to the others.
    """
    from dasc.runtime import distributed

    from dasc.runtime.stopping import sigterm_raises

    world = distributed.WorldInfo.from_env()
    if not world.launched:
        with sigterm_raises():
            return _run_search(request, sources, resume, world)
    distributed.init_from_env()
    # an error on one rank leaves the others waiting in a collective: they stop with one line
    with sigterm_raises(), distributed.peer_guard(
            world.rank, world.world, f"continue with: dasc search --resume {request.run_dir}"):
        return _run_search(request, sources, resume, world)


def _run_search(request: SearchRequest, sources: Sources, resume: bool, world) -> dict:
    from dasc.runtime import distributed
    from dasc.runtime.config import resolve_config
    from dasc.runtime.data import check_fits, check_same_data, load_dataset
    from dasc.runtime.lower import check_fits_in_memory
    from dasc.fsutil import DirLock, atomic_write_text
    from dasc.runtime.rundir import SPACE_COPY, prepare_run_dir, write_json

    run_dir = Path(request.run_dir)
    ir = _compile(request.space, request.overrides, sources)
    recorded_data = None
    if resume:
        config, recorded_data = distributed.from_rank0(lambda: stored_config(run_dir))
    else:
        config = resolve_config(ir.search, request.settings)
    data = load_dataset(request.data)
    check_same_data(data, recorded_data, request.data, str(run_dir), "search")
    check_fits(data, _input_shape(ir), _classes(ir), ir.span)
    # the parent of --nproc N checks N here, before RUN_DIR exists (workers pass 1)
    _check_split(len(data.x_train), config, request.data, 1 if world.launched else request.nproc)
    check_fits_in_memory(ir)  # before RUN_DIR is created: a refused run leaves nothing behind
    if config.device == "cuda":
        _check_cuda(world, request.nproc)

    lock = DirLock(enabled=not os.environ.get(distributed.PARENT_ENV))

    def prepare() -> None:
        # an existing run (to resume, or to replace with --force) must not be in use; taken
        # before prepare sweeps temporaries that a live process may be writing
        lock.take(run_dir, "search")
        prepare_run_dir(run_dir, force=request.force, resume=resume)
        lock.take(run_dir, "search")  # a new directory (or the one --force remade)
        if not resume:
            text = sources.text(request.space) or ""
            write_json(run_dir / "config.json",
                       config_record(request, config, data.digest(), text))
            # after config.json (the run marker): a kill in between leaves an ordinary run
            # whose resume reads SPACE itself, never a directory that --force refuses to clear
            atomic_write_text(run_dir / SPACE_COPY, text)

    try:
        if not world.launched and request.nproc > 1:
            prepare()
            return _launch(request, run_dir)
        distributed.from_rank0(prepare)
        return _search_here(ir, data, config, run_dir, request, resume, world)
    except KeyboardInterrupt as stop:
        # Ctrl-C or SIGTERM outside the step loop (building the model, restoring, the final
        # phase), or a second one: the last checkpoint stands, so say how to resume just as
        # the loop's own stop does.
        from dasc.runtime.stopping import Interrupted

        begun = (run_dir / "config.json").is_file()
        if isinstance(stop, Interrupted) or world.launched or not begun:
            raise
        raise Interrupted(run_dir, getattr(stop, "signum", signal.SIGINT)) from None
    finally:
        lock.release()


def _launch(request: SearchRequest, run_dir: Path) -> dict:
    """The parent of `--nproc N`: start the workers, then report what rank 0 wrote."""
    from dasc.runtime import distributed
    from dasc.runtime.rundir import read_json

    argv = ["search", "--resume", str(run_dir)] + ([] if request.progress else ["--quiet"])
    argv += ["--sync-bn"] if request.sync_bn else []
    hint = f"continue with: dasc search --resume {run_dir} (on any number of processes)"
    try:
        code = distributed.launch(request.nproc, argv)
    except distributed.LaunchStopped as stop:  # the workers finished their step, rank 0 saved
        from dasc.runtime.stopping import Interrupted

        if not (run_dir / "summary.json").is_file():  # (else the signal came after the end)
            raise Interrupted(run_dir, stop.signum) from None
        code = 0
    except distributed.WorkerFailed as err:
        raise UsageError(f"{err.message}; {_checkpoint_position(run_dir)}", None,
                         hint) from None
    if code != 0:
        raise UsageError("the distributed search failed (see the workers' messages above)",
                         None, hint)
    summary = dict(read_json(run_dir / "summary.json"))  # type: ignore[arg-type]
    return {**summary, "run_dir": str(run_dir), "arch": str(run_dir / "arch.json"),
            "processes": request.nproc}


def _checkpoint_position(run_dir: Path) -> str:
    """Where a resumed run will start, read from the newest checkpoint."""
    from dasc.runtime.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    except UsageError:
        return "no checkpoint was written yet"
    where = (f"the start of epoch {state['epoch'] + 1}" if not state["step"]
             else f"epoch {state['epoch'] + 1}, step {state['step']}")
    return f"the last checkpoint ({where}) is {run_dir / 'checkpoints' / 'last.pt'}"


def prints_result() -> bool:
    """Whether this process prints the command's result: not a rank other than 0, and not a
    worker whose `--nproc` parent prints it."""
    import os

    from dasc.runtime.distributed import PARENT_ENV

    return int(os.environ.get("RANK", 0)) == 0 and not os.environ.get(PARENT_ENV)


def _search_here(ir, data, config, run_dir: Path, request: SearchRequest, resume: bool, world) -> dict:
    from dasc.runtime import distributed, sync_bn
    from dasc.runtime.checkpoint import load_checkpoint
    from dasc.runtime.finish import finish
    from dasc.runtime.search import Parallel, Searcher
    from dasc.runtime.stopping import Interrupted, exit_stopped_worker

    parallel = Parallel(world.rank, world.world, distributed.average_across_ranks,
                        distributed.sync_step, request.sync_bn)
    try:
        searcher = Searcher(ir, data, config, run_dir, parallel)
        last = run_dir / "checkpoints" / "last.pt"
        if resume:
            state = distributed.from_rank0(
                lambda: load_checkpoint(last, searcher.fingerprint, CHANGED_SINCE_START)
                if last.is_file() else None)
            if state is not None:
                searcher.restore_state(state)
        update, close = _progress_bar(config.epochs, request.progress and parallel.main)
        die = distributed.die_hook(world.rank)
        steps = 0

        def on_step(info: dict) -> None:
            nonlocal steps
            steps += 1
            update(info)
            die(steps)

        try:
            searcher.run(progress=on_step)
        except Interrupted as stopped:
            if not world.launched:
                raise
            exit_stopped_worker(stopped, prints_result())
        finally:
            close()
        sync_bn.revert(searcher.model)
        outcome = finish(searcher)
    finally:
        distributed.shutdown()
    return {
        "space": ir.name,
        "run_dir": str(run_dir),
        "epochs": outcome.epochs,
        "supernet_test_acc": outcome.supernet_acc,
        "derived_test_acc_inherited": outcome.derived_acc,
        "derived_test_acc_inherited_raw_bn": outcome.derived_acc_raw,
        "discretization_gap": outcome.gap,
        "arch": str(run_dir / "arch.json"),
        "processes": world.world,
    }


def _input_shape(ir) -> tuple[int, int, int]:
    s = ir.node(ir.input).shape
    return (s.c, s.h, s.w)


def _check_cuda(world, nproc: int = 1) -> None:
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available", None,
                         "run with --device cpu, or on a machine with a GPU and a CUDA build of torch")
    if not world.launched and nproc > torch.cuda.device_count():
        raise UsageError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs; this machine "
                         f"has {torch.cuda.device_count()}", None,
                         "use one process per GPU (NCCL cannot share a GPU between ranks)")
    if world.local_rank >= torch.cuda.device_count():
        raise UsageError(f"local rank {world.local_rank} has no GPU of its own (this node has "
                         f"{torch.cuda.device_count()}); NCCL needs one GPU per process", None,
                         "use at most one process per GPU (--nproc / --nproc-per-node)")


def _check_split(n: int, config, data: str, nproc: int = 1) -> None:
    """Both halves of the training data need images: an empty architecture half gives NaN
    losses that would be misreported as a learning-rate problem. And every one of `nproc`
    processes needs an image of each global batch (`Searcher.batches` splits it
    `[rank::world]`), which the workers would only find out after RUN_DIR was created."""
    from dasc.runtime import distributed
    from dasc.runtime.search import split_indices

    w, a = split_indices(n, config.train_portion, config.seed)
    if not len(w) or not len(a):
        raise UsageError(f"{data} has {n} training images: train_portion {config.train_portion:g} "
                         f"leaves {len(w)} for the weights and {len(a)} for the architecture "
                         "(validation) half", None,
                         "use more training images, or a train_portion that leaves both halves "
                         "some (DARTS uses 0.5)")
    # a half smaller than a batch is one batch
    distributed.check_nproc_fits_batch(nproc, min(config.batch_size, len(w), len(a)))
