"""What a search's run directory records of its request, and reading it back for `--resume`.

config.json holds the request (absolute paths, `--set` values, flags), the resolved settings,
and digests of the data and of the space's text; space.das holds that text. Everything read
back is validated as the command line's values are, since a config.json may have been edited
by hand: a bad value is a located error naming the field, never a traceback later.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dasc import __version__
from dasc.errors import Span, UsageError


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


# The space's own text is resumed from RUN_DIR/space.das, so a mismatch on resume comes from
# a file it includes, edited --set values in config.json, or another dasc version.
CHANGED_SINCE_START = ("put back what changed since the run started: a file the space includes, "
                    "or the --set values in its config.json (space.das keeps the space's own "
                    "text)")


def stored_config(run_dir: Path):
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


def config_record(request: SearchRequest, config, data_digest: str, space_text: str) -> dict:
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
