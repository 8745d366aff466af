"""The `dasc search` job from a request dataclass: compile, load data, search, finish.

The CLI builds a `SearchRequest` and calls `run_search`; nothing here reads argv. A resumed run
rebuilds its request from the run directory's config.json, so `--resume RUN_DIR` needs nothing
else and cannot silently continue with different settings.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dasc import __version__
from dasc.errors import Sources, Span, UsageError


@dataclass(frozen=True)
class SearchRequest:
    """Everything the user asked for (CLI flags and the space's own defaults are merged later)."""

    space: str
    data: str
    run_dir: str
    overrides: dict[str, int] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    force: bool = False
    nproc: int = 1
    progress: bool = True
    sync_bn: bool = False


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
        config, recorded_data = distributed.from_rank0(lambda: _stored_config(run_dir))
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

    lock = DirLock()

    def prepare() -> None:
        if not os.environ.get(distributed.PARENT_ENV):  # (a --nproc parent holds it)
            # an existing run (to resume, or to replace with --force) must not be in use;
            # taken before prepare sweeps temporaries that a live process may be writing
            lock.take(run_dir, "search")
            prepare_run_dir(run_dir, force=request.force, resume=resume)
            lock.take(run_dir, "search")  # a new directory (or the one --force remade)
        else:
            prepare_run_dir(run_dir, force=request.force, resume=resume)
        if not resume:
            text = sources.text(request.space) or ""
            write_json(run_dir / "config.json",
                       _config_record(request, config, data.digest(), text))
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
    from dasc.runtime.stopping import Interrupted, ignore_stop_signals

    parallel = Parallel(world.rank, world.world, distributed.average_across_ranks,
                        distributed.sync_step, request.sync_bn)
    try:
        searcher = Searcher(ir, data, config, run_dir, parallel)
        last = run_dir / "checkpoints" / "last.pt"
        if resume:
            state = distributed.from_rank0(
                lambda: load_checkpoint(last, searcher.fingerprint, _CHANGED_INCLUDE)
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
            if prints_result():  # torchrun's rank 0; a --nproc parent says it itself
                print(stopped, file=sys.stderr)
            ignore_stop_signals()
            raise SystemExit(stopped.status) from None
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


# The space's own text is resumed from RUN_DIR/space.das, so a mismatch on resume comes from
# a file it includes, edited --set values in config.json, or another dasc version.
_CHANGED_INCLUDE = ("put back what changed since the run started: a file the space includes, "
                    "or the --set values in its config.json (space.das keeps the space's own "
                    "text)")


def _stored_config(run_dir: Path):
    """A resumed run continues with exactly the settings it started with, validated as the
    command line's are (config.json may have been edited by hand); and the digest of the data
    it started on (None for runs from before the digest)."""
    from dasc.runtime.config import resolve_config
    from dasc.runtime.rundir import read_json

    path = run_dir / "config.json"
    record = read_json(path)
    try:
        stored = record["config"]  # type: ignore[index]
        if not isinstance(stored, dict):
            raise TypeError("`config` is not an object")
        config = resolve_config((), stored)
        digest = record.get("data_sha256")  # type: ignore[union-attr]
        if digest is not None and not isinstance(digest, str):
            raise TypeError("`data_sha256` is not a string")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is damaged ({exc})", Span.of_file(str(path)),
                         "start the search again with --force") from None
    except UsageError as exc:
        raise UsageError(f"{path} is damaged ({exc.message})", Span.of_file(str(path)),
                         "start the search again with --force") from None
    return config, digest


def _check_request_types(request: SearchRequest) -> None:
    """Each stored field must have the type the command line gives it (TypeError if not)."""
    for name in ("space", "data"):
        value = getattr(request, name)
        if not isinstance(value, str) or "\x00" in value:
            raise TypeError(f"`request.{name}` is not a path")
    if not isinstance(request.overrides, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in request.overrides.values()):
        raise TypeError("`request.overrides` is not a map of integers")
    if not isinstance(request.settings, dict):
        raise TypeError("`request.settings` is not an object")
    if not isinstance(request.nproc, int) or isinstance(request.nproc, bool):
        raise TypeError("`request.nproc` is not an integer")
    if not isinstance(request.sync_bn, bool):
        raise TypeError("`request.sync_bn` is not true or false")


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


def _config_record(request: SearchRequest, config, data_digest: str, space_text: str) -> dict:
    """Paths are stored absolute, so `--resume` works from any working directory; the digest
    of the space's text tells an intact space.das from one edited since."""
    fields = asdict(request)
    fields["space"] = os.path.abspath(request.space)
    if request.data != "digits":
        fields["data"] = os.path.abspath(request.data)
    return {"dasc_version": __version__, "request": fields, "config": config.to_json(),
            "data_sha256": data_digest, "space_sha256": _sha256(space_text)}


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_from_run_dir(run_dir: str, progress: bool = True) -> tuple[SearchRequest, str | None]:
    """The request a run was started with and the text of its space as it was then, for
    `--resume` (read by rank 0 in a worker; the text is None for a run from before the copy).

    The copy is what makes a resume exact and always possible: SPACE may since have been edited,
    deleted, or have been a pipe (`dasc search <(gen.sh) ...`) that cannot be read twice.
    """
    from dasc.runtime import distributed

    if distributed.WorldInfo.from_env().launched:
        distributed.init_from_env()
    return distributed.from_rank0(
        lambda: (_read_request(run_dir, progress), _read_space_copy(Path(run_dir))))


def _read_space_copy(run_dir: Path) -> str | None:
    from dasc.dsl.loader import read_source
    from dasc.runtime.rundir import SPACE_COPY

    from dasc.fsutil import input_problem

    path = run_dir / SPACE_COPY
    if not path.exists() and not path.is_symlink():
        return None
    problem = input_problem(path)  # a FIFO would block, /dev/zero would fill memory
    if problem:
        raise UsageError(f"{path} {problem}", Span.of_file(str(path)),
                         "it should be the copy of the space the search started with; put "
                         "that back, or delete it to compile SPACE itself")
    text = read_source(str(path), Span.of_file(str(path)))
    from dasc.runtime.rundir import read_json

    record = read_json(run_dir / "config.json")
    recorded = record.get("space_sha256") if isinstance(record, dict) else None
    if recorded is not None and recorded != _sha256(text):
        raise UsageError(f"{path} has been changed since the search started",
                         Span.of_file(str(path)),
                         "put back the text the search started with (SPACE's, if SPACE is "
                         "unchanged), or delete it to compile SPACE itself")
    return text


def _read_request(run_dir: str, progress: bool) -> SearchRequest:
    from dasc.runtime.rundir import read_json

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a dasc run directory (no config.json)",
                         Span.of_file(run_dir), "pass the RUN_DIR an earlier `dasc search -o` created")
    record = read_json(path)
    if isinstance(record, dict) and "arch" in record:
        # train's TRAIN_DIR has a config.json too; 'damaged ... --force' would be wrong advice
        raise UsageError(f"{run_dir} is a `dasc train` directory, not a search run: there is no "
                         "search to resume", Span.of_file(run_dir),
                         f"resume a training with: dasc train --resume {run_dir}")
    try:
        fields = dict(record["request"])  # type: ignore[index]
        fields["progress"] = progress
        fields["force"] = False
        fields["run_dir"] = run_dir
        request = SearchRequest(**fields)
        _check_request_types(request)
        return request
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path} is damaged ({exc})", Span.of_file(str(path)),
                         "start the search again with --force") from None
