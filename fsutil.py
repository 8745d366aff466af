"""Atomic output files: every file dasc writes appears complete or not at all.

A run interrupted by Ctrl-C, a full disk or a crash must never leave a half-written `ir.json`,
a truncated SVG, or (worst) a `.das` file that `dasc fmt` was rewriting in place. So every writer
goes through here: write to a temporary file in the same directory, flush and fsync it, then
`os.replace` it over the target (atomic on POSIX within one file system), then fsync the
directory so the rename itself survives a power cut.

A missing parent directory is the user's mistake (a typo in `-o`), reported as a `UsageError`
rather than silently created: creating `ouput/` by accident hides the typo.

Inputs are read by each stage, but `input_problem` words, for all of them, why a path is not a
file that can be read ('does not exist' was said of directories, devices and symlink loops).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from dasc.errors import Span, UsageError

__all__ = ["check_output_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "input_problem"]


def input_problem(path: str | os.PathLike[str], *, pipes: bool = False) -> str | None:
    """Why `path` cannot be read as an input file, in words that follow its name in a message
    ('does not exist', 'is a symlink loop', 'is a directory', 'is not a regular file'), or None
    when it can: a regular file, and with `pipes` also a named pipe or character device (a
    space or arch from `<(...)` or /dev/stdin). Other failures, such as a permission, are left
    to the read itself, which reports them."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "does not exist"
    except OSError as exc:
        return "is a symlink loop" if exc.errno == errno.ELOOP else None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISREG(mode) or (pipes and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode))):
        return None
    return "is not a regular file"


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Validate an output path before any work is done, so a long command fails fast.

    Returns the path; raises `UsageError` when its directory is missing or not a directory, or
    when the path itself is an existing directory.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise UsageError(
            f"cannot write '{target}': directory '{parent}' does not exist",
            hint=f"create it first (mkdir -p {_shell_word(str(parent))}) or choose another path")
    if not parent.is_dir():
        raise UsageError(f"cannot write '{target}': '{parent}' is not a directory",
                         hint="choose an output path inside an existing directory")
    if target.is_dir():
        raise UsageError(f"cannot write '{target}': it is a directory",
                         hint="give the path of a file to create, not of a directory")
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically; an existing file keeps its permission bits.

    A symlink is followed (the link stays, its target is replaced). A path that exists but is
    not a regular file (`-o /dev/stdout`, a named pipe) is written in place, since a device
    cannot be renamed over, and renaming over /dev/stdout as root would replace the device.
    """
    named = check_output_path(path)
    if named.exists() and not named.is_file():
        try:
            with open(named, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:
            raise  # the reader went away (`-o /dev/stdout | head`): the CLI exits quietly
        except OSError as exc:
            raise _os_error(named, exc) from None
        return named
    target = Path(os.path.realpath(named)) if named.is_symlink() else named
    parent = target.parent if str(target.parent) else Path(".")
    mode = _target_mode(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _os_error(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        # Includes KeyboardInterrupt: the target is untouched, the temporary file goes away.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _os_error(target, exc) from None
        raise
    _fsync_dir(parent)
    return named


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` as UTF-8 (the only encoding `.das` files and our outputs use)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Pretty-printed JSON with a trailing newline, so outputs diff well in version control."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _os_error(target: Path, exc: OSError) -> UsageError:
    """A full disk or a read-only directory is the environment's problem, not a dasc bug."""
    reason = exc.strerror or str(exc)
    return UsageError(f"cannot write '{target}': {reason}",
                      hint="check the permissions and free space of the output directory")


def _target_mode(target: Path) -> int:
    """Keep the mode of a file being replaced; a new file gets 0666 minus the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Persist the rename; some file systems refuse to open directories, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _shell_word(word: str) -> str:
    """Quote a path for a hint the user may paste into a shell."""
    if word and all(ch.isalnum() or ch in "-_./" for ch in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def check_writable_dir(folder: Path, span: Span | None) -> None:
    """A run or training directory about to be resumed must take writes: found now, not at its
    first checkpoint an epoch of compute later."""
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write to {folder}", span,
                         "make it writable (or copy it somewhere writable and resume the copy)")


LOCK_FILE = ".dasc.lock"


class DirLock:
    """An exclusive lock on a run or training directory while one command works in it.

    Two `--resume`s of one run (or a `--force` over a run still going) would both write its
    checkpoints, whichever wrote last winning. `flock` on `LOCK_FILE` inside the directory is
    released by the kernel when the process dies, so a killed run never leaves a stale lock.
    Best effort: where the filesystem cannot lock (or the folder is read-only) nothing is held,
    and the writes report their own errors.
    """

    def __init__(self, enabled: bool = True) -> None:
        """`enabled=False` for a process whose parent holds the lock for it (a `--nproc`
        worker): taking it again from another process would refuse its own run."""
        self._held: list[int] = []
        self._enabled = enabled

    def take(self, folder: Path, command: str) -> None:
        """Lock `folder` if it exists and this process does not hold its lock already."""
        import fcntl

        path = folder / LOCK_FILE
        if not self._enabled or not folder.is_dir() or self._holds(path):
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{folder} is in use by another dasc {command}", None,
                             "wait for it to finish or stop it (Ctrl-C keeps its checkpoint), "
                             "or choose another directory") from None
        except OSError:
            os.close(fd)
            return
        self._held.append(fd)

    def _holds(self, path: Path) -> bool:
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return False
        return any(os.fstat(fd).st_ino == inode for fd in self._held)

    def release(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held.clear()
