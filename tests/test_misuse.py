"""Every CLI misuse is a one-line error with a hint and exit status 2; nothing executes input.

Why: people meet a tool through their mistakes. A wrong flag, a corrupt file, a path typo or a
run directory that already exists must each get one line saying what is wrong and one saying
what to do, never a traceback, and never a lost run. Each misuse has a golden file of its
stderr under tests/golden/misuse/ (temporary paths normalised), so a change in wording is a
reviewed diff. Numerical faults (NaN loss, exploding α, an empty validation split) stop with a
message naming the cause and keep the last good checkpoint. And input is only ever data: no
eval/exec, checkpoints loaded with weights_only=True, includes confined to the space's folder.

Commands run in-process through `main()` (torch imported once); three run as real processes to
prove the exit status.
"""

from __future__ import annotations

import ast as pyast
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SPACES, golden_check, run_dasc
from dasc.cli.main import main

FIRST_LINE = re.compile(r"^(\S+:\d+:\d+: |dasc: )error: \S.*$")
SMALL = ["--set", "C=4", "--set", "layers=2"]
FAST = ["--epochs", "1", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with spaces, broken files and one real finished search run (`run`)."""
    ws = tmp_path_factory.mktemp("misuse")
    for name in ("digits.das", "darts.das"):
        shutil.copy(SPACES / name, ws / name)
    shutil.copy(ws / "digits.das", ws / "pristine.das")  # to check no misuse overwrites it
    text = (SPACES / "digits.das").read_text().replace("  epochs = 10", "  epochs = 1\n"
                                                      "  train_portion = 0.9")
    (ws / "digits09.das").write_text(text)
    (ws / "afile").write_text("a regular file\n")
    os.mkfifo(ws / "fifo.das")  # never opened by a refused command: nothing writes to it
    (ws / "loop.das").symlink_to("loop2.das")
    (ws / "loop2.das").symlink_to("loop.das")
    (ws / "bad.pt").write_bytes(b"not a checkpoint\n")
    (ws / "bad.json").write_text('{"format": "dasc-arch", "choices": {')
    (ws / "wrong.json").write_text('{"hello": 1}\n')
    (ws / "deep.json").write_text("[" * 100_000)  # json's decoder recurses
    (ws / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    rng = np.random.default_rng(0)
    np.savez(ws / "tiny.npz", x_train=rng.random((4, 1, 8, 8)), y_train=np.arange(4),
             x_test=rng.random((2, 1, 8, 8)), y_test=np.arange(2))
    np.savez(ws / "obj.npz", x_train=np.array([{"a": 1}] * 4, dtype=object),
             y_train=np.arange(4), x_test=np.zeros((2, 1, 8, 8)), y_test=np.arange(2))
    np.savez(ws / "strlabels.npz", x_train=rng.random((8, 1, 8, 8)), y_train=np.array(["3"] * 8),
             x_test=rng.random((2, 1, 8, 8)), y_test=np.arange(2))
    np.savez(ws / "rgb.npz", x_train=rng.random((8, 3, 32, 32)), y_train=np.arange(8) % 2,
             x_test=rng.random((2, 3, 32, 32)), y_test=np.arange(2))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        assert main(["search", "digits.das", "--data", "digits", *SMALL, *FAST, "-o", "run"]) == 0
        assert main(["train", "digits.das", *SMALL, "--data", "digits", "--arch", "run/arch.json",
                     *FAST, "-o", "trained"]) == 0
    arch = json.loads((ws / "run" / "arch.json").read_text())
    first = sorted(arch["choices"])[0]
    (ws / "badop.json").write_text(json.dumps({**arch, "choices": {**arch["choices"],
                                                                    first: "sep_conv_5x5"}}))
    shutil.copytree(ws / "run", ws / "trunc")
    last = ws / "trunc" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    shutil.copy(last, ws / "trunc.pt")
    shutil.copy(ws / "run" / "checkpoints" / "last.pt", ws / "trained.pt")
    shutil.copytree(ws / "run", ws / "other")
    config = json.loads((ws / "other" / "config.json").read_text())
    config["request"]["overrides"]["C"] = 8
    (ws / "other" / "config.json").write_text(json.dumps(config))
    shutil.copytree(ws / "run", ws / "damaged")
    (ws / "damaged" / "config.json").write_text("{")
    shutil.copytree(ws / "run", ws / "deep")
    (ws / "deep" / "config.json").write_text("[" * 100_000)
    for name, key, value in (("tampered", "flags", {"epochs": "many"}), ("swarm", "nproc", 10**6)):
        shutil.copytree(ws / "trained", ws / name)
        (ws / name / "summary.json").unlink()
        config = json.loads((ws / name / "config.json").read_text())
        config["request"][key] = value
        (ws / name / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copytree(ws / "run", ws / "fifocopy")
    (ws / "fifocopy" / "space.das").unlink()
    os.mkfifo(ws / "fifocopy" / "space.das")
    shutil.copytree(ws / "run", ws / "editedcopy")
    with open(ws / "editedcopy" / "space.das", "a", encoding="utf-8") as copy:
        copy.write("# edited after the search started\n")
    shutil.copytree(ws / "trained", ws / "killedtrain")
    (ws / "killedtrain" / "summary.json").unlink()
    shutil.copytree(ws / "run", ws / "onebyte")
    (ws / "onebyte" / "checkpoints" / "last.pt").write_bytes(b"Q")
    for name, key, value in (("negseed", "config", "seed"), ("otherdata", None, "data_sha256")):
        shutil.copytree(ws / "run", ws / name)
        config = json.loads((ws / name / "config.json").read_text())
        if key:
            config[key][value] = -1
        else:
            config[value] = "0" * 64
        (ws / name / "config.json").write_text(json.dumps(config, indent=2))  # line 1: "{"
    (ws / "notarun").mkdir()
    (ws / "notarun" / "notes.txt").write_text("precious\n")
    return ws


def misuse(ws: Path, capsys, monkeypatch, name: str, argv: list[str]) -> str:
    """Run `dasc ARGV` in `ws`; check exit 2, the shape of the message, and its golden."""
    monkeypatch.chdir(ws)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"exit status {rc}:\n{err}"
    assert "Traceback" not in err
    lines = err.rstrip("\n").splitlines()
    assert FIRST_LINE.match(lines[0]), f"not a one-line error: {lines[0]!r}"
    assert lines[-1].startswith("hint: "), f"no hint:\n{err}"
    shown = err.replace(str(ws), "<WS>").replace(str(ws.parent), "<WS>/..")
    shown = shown.replace(str(ROOT), "<ROOT>")
    shown = re.sub(r"this machine's [\d,]+ GiB", "this machine's N GiB", shown)
    golden_check(f"misuse/{name}.txt", shown)
    return err


ARCH = ["--arch", "run/arch.json"]
TRAIN = ["train", "digits.das", *SMALL, "--data", "digits", "--quiet"]
CASES = {
    "unknown_flag": ["compile", "digits.das", "--frobnicate"],
    "unknown_command": ["compil", "digits.das"],
    "set_without_value": ["compile", "digits.das", "--set", "C"],
    "set_not_an_integer": ["compile", "digits.das", "--set", "C=abc"],
    "set_unknown_parameter": ["compile", "digits.das", "--set", "Channels=4"],
    "set_too_large": ["compile", "digits.das", "--set", "C=" + "9" * 101],
    "space_missing": ["compile", "digit.das"],
    "space_is_directory": ["compile", "."],
    "space_is_a_symlink_loop": ["compile", "loop.das"],
    "fmt_rewrite_of_a_pipe": ["fmt", "fifo.das"],
    "epochs_negative": ["search", "digits.das", "--epochs", "-1", "-o", "new"],
    "epochs_not_a_number": ["search", "digits.das", "--epochs", "abc", "-o", "new"],
    "train_epochs_zero": [*TRAIN, *ARCH, "--epochs", "0", "-o", "t"],
    "nproc_zero": ["search", "digits.das", "--nproc", "0", "-o", "new"],
    "nproc_too_large": ["search", "digits.das", "--nproc", "100000", "-o", "new"],
    "nproc_more_than_the_batch": ["search", "digits.das", "--data", "digits", *SMALL,
                                  "--batch-size", "4", "--nproc", "8", "--quiet", "-o", "new"],
    "train_nproc_too_large": [*TRAIN, *ARCH, "--nproc", "1000", "-o", "new"],
    "train_nproc_more_than_the_batch": [*TRAIN, *ARCH, "--batch-size", "4", "--nproc", "8",
                                        "-o", "new"],
    "seed_too_large": ["search", "digits.das", "--seed", str(2**64), "-o", "new"],
    "train_seed_negative": [*TRAIN, *ARCH, "--seed", "-1", "-o", "new"],
    "tau_not_a_number": ["search", "digits.das", "--tau", "nan", "-o", "new"],
    "learning_rate_infinite": ["search", "digits.das", "--w-lr", "inf", "-o", "new"],
    "search_without_output": ["search", "digits.das"],
    "arch_missing": [*TRAIN, "--arch", "nothere.json", "-o", "t"],
    "arch_is_a_run_directory": ["derive", "digits.das", *SMALL, "--arch", "run"],
    "arch_corrupt": [*TRAIN, "--arch", "bad.json", "-o", "t"],
    "arch_not_an_arch": [*TRAIN, "--arch", "wrong.json", "-o", "t"],
    "arch_nested_too_deeply": [*TRAIN, "--arch", "deep.json", "-o", "t"],
    "arch_does_not_fit": [*TRAIN, "--arch", "badop.json", "-o", "t"],
    "arch_of_another_space": ["train", "darts.das", *ARCH, "--data", "digits", "-o", "t"],
    "weights_corrupt": [*TRAIN, *ARCH, "--weights", "bad.pt", "-o", "t"],
    "weights_not_a_regular_file": [*TRAIN, *ARCH, "--weights", "/dev/null", "-o", "t"],
    "weights_truncated": [*TRAIN, *ARCH, "--weights", "trunc.pt", "-o", "t"],
    "weights_of_other_parameters": ["train", "digits.das", "--set", "C=8", "--set", "layers=2",
                                    "--data", "digits", *ARCH, "--weights", "run", "-o", "t"],
    "export_weights_corrupt": ["export", "digits.das", *SMALL, *ARCH, "--weights", "bad.pt",
                               "-o", "m.onnx"],
    "export_opset_out_of_range": ["export", "digits.das", *SMALL, *ARCH, "--opset", "99",
                                  "-o", "m.onnx"],
    "derive_run_of_other_parameters": ["derive", "digits.das", "--run", "run"],
    "render_run_of_other_parameters": ["render", "digits.das", "--run", "run", "-o", "new.gv"],
    "resume_truncated_checkpoint": ["search", "--resume", "trunc", "--quiet"],
    "resume_checkpoint_of_other_parameters": ["search", "--resume", "other", "--quiet"],
    "resume_damaged_config": ["search", "--resume", "damaged", "--quiet"],
    "resume_config_nested_too_deeply": ["search", "--resume", "deep", "--quiet"],
    "resume_train_directory": ["search", "--resume", "trained", "--quiet"],
    "resume_space_copy_is_a_fifo": ["search", "--resume", "fifocopy", "--quiet"],
    "resume_checkpoint_of_one_byte": ["search", "--resume", "onebyte", "--quiet"],
    "resume_space_copy_edited": ["search", "--resume", "editedcopy", "--quiet"],
    "train_over_a_killed_training": [*TRAIN, *ARCH, "-o", "killedtrain"],
    "resume_config_with_a_negative_seed": ["search", "--resume", "negseed", "--quiet"],
    "resume_on_other_data": ["search", "--resume", "otherdata", "--quiet"],
    "resume_not_a_run": ["search", "--resume", "notarun"],
    "resume_with_space": ["search", "digits.das", "--resume", "run"],
    "resume_adding_sync_bn": ["search", "--resume", "run", "--sync-bn", "--quiet"],
    "train_without_arch": ["train", "digits.das", "--data", "digits", "-o", "t"],
    "train_resume_finished": ["train", "--resume", "trained"],
    "train_resume_with_flags": ["train", "--resume", "trained", "--epochs", "3"],
    "train_resume_search_run": ["train", "--resume", "run"],
    "train_resume_not_a_train_directory": ["train", "--resume", "notarun"],
    "train_resume_tampered_config": ["train", "--resume", "tampered"],
    "train_resume_tampered_nproc": ["train", "--resume", "swarm"],
    "data_missing": ["search", "digits.das", "--data", "nothere.npz", "-o", "new"],
    "data_corrupt": ["search", "digits.das", "--data", "bad.npz", "-o", "new"],
    "data_not_a_regular_file": ["search", "digits.das", "--data", "/dev/null", "-o", "new"],
    "data_pickled_objects": ["search", "digits.das", "--data", "obj.npz", "-o", "new"],
    "data_wrong_shape": ["search", "digits.das", "--data", "rgb.npz", "-o", "new"],
    "data_string_labels": ["search", "digits.das", "--data", "strlabels.npz", "-o", "new"],
    "output_in_missing_directory": ["render", "digits.das", "-o", "nodir/out.svg"],
    "output_under_a_file": ["render", "digits.das", "-o", "afile/out.svg"],
    "compile_output_under_a_file": ["compile", "digits.das", "-o", "afile/ir.json"],
    "export_output_in_missing_directory": ["export", "digits.das", *SMALL, *ARCH,
                                           "-o", "nodir/m.onnx"],
    "search_output_under_a_file": ["search", "digits.das", "--data", "digits", *SMALL, *FAST,
                                   "-o", "afile/run"],
    "run_directory_exists": ["search", "digits.das", *SMALL, *FAST, "-o", "run"],
    "force_on_a_folder_that_is_not_a_run": ["search", "digits.das", *SMALL, *FAST, "--force",
                                            "-o", "notarun"],
    "train_directory_exists": [*TRAIN, *ARCH, "-o", "notarun"],
    "train_output_under_a_file": [*TRAIN, *ARCH, "-o", "afile/t"],
    "export_output_is_the_weights": ["export", "digits.das", *SMALL, *ARCH, "--weights",
                                     "trained.pt", "-o", "trained.pt"],
    "derive_output_is_the_space": ["derive", "digits.das", *SMALL, *ARCH, "-o", "digits.das"],
    "space_too_large_for_memory": ["search", "digits.das", "--set", "C=1000000000", *FAST,
                                   "-o", "huge"],
    "empty_validation_split": ["search", "digits09.das", "--data", "tiny.npz", *SMALL, *FAST,
                               "-o", "split"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_misuse_is_one_line_with_a_hint(ws, capsys, monkeypatch, name):
    misuse(ws, capsys, monkeypatch, name, CASES[name])
    assert not (ws / "new").exists() and not (ws / "huge").exists() and not (ws / "split").exists()
    assert not (ws / "new.gv").exists()
    assert (ws / "notarun" / "notes.txt").read_text() == "precious\n"
    assert (ws / "digits.das").read_text() == (ws / "pristine.das").read_text()
    assert (ws / "trained.pt").read_bytes()[:2] == b"PK", "the checkpoint was overwritten"


def test_existing_run_is_untouched(ws):
    """A refused `-o run` left the finished run as it was."""
    assert (ws / "run" / "arch.json").is_file() and (ws / "run" / "summary.json").is_file()


@pytest.mark.parametrize("name,argv,cause", [
    ("nan_loss", ["--w-lr", "1e30"], "loss became nan"),
    ("exploding_alpha", ["--arch-lr", "1e9"], "architecture parameters exploded"),
])
def test_numerical_fault_names_cause_and_keeps_checkpoint(ws, capsys, monkeypatch, name, argv,
                                                          cause):
    import torch

    err = misuse(ws, capsys, monkeypatch, name,
                 ["search", "digits.das", "--data", "digits", *SMALL, *FAST, *argv, "-o", name])
    assert cause in err
    state = torch.load(ws / name / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values()
               if t.is_floating_point()), "the kept checkpoint is not a good one"


def test_out_of_memory_is_a_message(ws, capsys, monkeypatch):
    """torch's failed allocation (a RuntimeError) is the machine's limit, not a dasc bug."""
    import dasc.cli.cmd_compile as cmd

    def starve(args, ctx):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 72000000000 bytes.")
    monkeypatch.setattr(cmd, "run", starve)
    misuse(ws, capsys, monkeypatch, "out_of_memory", ["compile", "digits.das"])


def test_ctrl_c_outside_the_loop_says_how_to_resume(ws, capsys, monkeypatch):
    import dasc.runtime.finish as fin

    shutil.copytree(ws / "run", ws / "again", dirs_exist_ok=True)
    def ctrl_c(searcher):
        raise KeyboardInterrupt
    monkeypatch.setattr(fin, "finish", ctrl_c)
    monkeypatch.chdir(ws)
    capsys.readouterr()
    assert main(["search", "--resume", "again", "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == \
        "dasc: search interrupted; resume with: dasc search --resume again"


@pytest.mark.parametrize("args", [["compile", "spaces/digits.das", "--frobnicate"],
                                  ["compile", "spaces/digits.das", "--set", "C=x"]])
def test_real_process_exit_status(args):
    res = run_dasc(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert FIRST_LINE.match(res.stderr.splitlines()[0])


def test_reader_that_leaves_early_is_a_quiet_sigpipe_exit():
    """`dasc compile x --emit fx | head -1`: the reader closes the pipe with most of the code
    unwritten (over 64 KiB, more than a pipe holds). That exited 1, or with a BrokenPipeError
    traceback; now it is quiet and 141, what a shell reports for a process killed by SIGPIPE."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dasc", "compile", "spaces/darts.das",
                             "--set", "layers=24", "--emit", "fx"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    try:
        assert proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        assert proc.wait(timeout=300) == 141, err
    finally:
        proc.kill()
        proc.wait()
    assert err == "", err


@pytest.mark.parametrize("argv,status,says", [
    (["compile", "space.das"], 0, "architectures  2"),
    (["fmt", "--check", "space.das"], 0, "1 file already formatted"),
])
def test_space_from_a_pipe_is_read_once(tmp_path, capsys, monkeypatch, argv, status, says):
    """`dasc compile <(sed ... x.das)` names a pipe: read twice, the second read was empty and
    the space was reported as having no network block (a named pipe hung for ever). `fmt
    --check` reads a pipe too (only the rewrite refuses one)."""
    import threading

    fifo = tmp_path / "space.das"
    os.mkfifo(fifo)
    done = threading.Event()

    def write() -> None:
        fifo.write_text((SPACES / "pooling.das").read_text())
        while not done.wait(0.2):  # a second reader gets end-of-file, not a hung test
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    writer = threading.Thread(target=write)
    writer.start()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    try:
        assert main(argv) == status, capsys.readouterr().err
    finally:
        done.set()
        writer.join(timeout=5)
    out = capsys.readouterr()
    assert says in out.out + out.err


# ----------------------------------------------------------------------- nothing executes


def _package_sources() -> list[Path]:
    skip = {"tests", ".venv", "bench", "scripts", "build", "demo-out"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def _calls(path: Path):
    tree = pyast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Call):
            f = node.func
            name = f.id if isinstance(f, pyast.Name) else f.attr if isinstance(
                f, pyast.Attribute) else ""
            yield name, node


def test_no_eval_exec_or_unsafe_loading_in_the_package():
    """No eval/exec/compile of text, no pickle; torch.load only with weights_only=True and
    np.load only with allow_pickle=False."""
    sources = _package_sources()
    assert len(sources) > 40
    bad = []
    for path in sources:
        for name, call in _calls(path):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            kwargs = {k.arg: k.value for k in call.keywords}
            if name in ("eval", "exec") and isinstance(call.func, pyast.Name):
                bad.append(f"{where}: {name}()")
            elif name in ("loads", "load") and isinstance(call.func, pyast.Attribute) and \
                    getattr(call.func.value, "id", "") in ("pickle", "marshal", "yaml"):
                bad.append(f"{where}: {call.func.value.id}.{name}")
            elif name == "load" and getattr(call.func.value, "id", "") == "torch" and not (
                    isinstance(kwargs.get("weights_only"), pyast.Constant)
                    and kwargs["weights_only"].value is True):
                bad.append(f"{where}: torch.load without weights_only=True")
            elif name == "load" and getattr(call.func.value, "id", "") == "np" and not (
                    isinstance(kwargs.get("allow_pickle"), pyast.Constant)
                    and kwargs["allow_pickle"].value is False):
                bad.append(f"{where}: np.load without allow_pickle=False")
    assert not bad, "\n".join(bad)


# writers that take a destination, and its position: torch.save(obj, f), fig.savefig(f),
# np.savez(f), torch.onnx.export(model, args, f); searcher.save() takes none
_SINK = {"save": 1, "savefig": 0, "savez": 0, "export": 2}


def _is_buffer(node) -> bool:
    return isinstance(node, pyast.Name) and "buf" in node.id


def test_every_file_is_written_through_the_atomic_writer():
    """Only fsutil opens files for writing (temp file, fsync, rename): a crash at any moment
    leaves the old file or the new one, never half of one. torch.save and savefig write to
    memory buffers that fsutil then writes."""
    bad = []
    for path in _package_sources():
        if path.name == "fsutil.py":
            continue
        for name, call in _calls(path):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            mode = call.args[1] if len(call.args) > 1 else next(
                (k.value for k in call.keywords if k.arg == "mode"), None)
            if name in ("write_text", "write_bytes"):
                bad.append(f"{where}: {name}")
            elif name in ("open", "fdopen") and isinstance(mode, pyast.Constant) and any(
                    c in str(mode.value) for c in "wax+"):
                bad.append(f"{where}: open(..., {mode.value!r})")
            elif name in _SINK and len(call.args) > _SINK[name] and not _is_buffer(
                    call.args[_SINK[name]]):
                bad.append(f"{where}: {name} to a path")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name,include", [("include_parent", "../outside.das"),
                                          ("include_absolute", "/etc/passwd"),
                                          ("include_symlink_out", "link.das")])
def test_includes_cannot_escape_at_the_cli(tmp_path, capsys, monkeypatch, name, include):
    (tmp_path / "outside.das").write_text("param secret = 1\n")
    inner = tmp_path / "proj"
    inner.mkdir()
    (inner / "link.das").symlink_to(tmp_path / "outside.das")
    (inner / "main.das").write_text(f'include "{include}"\n' + (SPACES / "pooling.das").read_text())
    misuse(inner, capsys, monkeypatch, name, ["compile", "main.das"])
    out = capsys.readouterr()
    assert "secret" not in out.out + out.err
