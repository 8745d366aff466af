"""The command line: misuse gives one rendered error and exit 2, output is parseable, the
front end stays free of torch, and files are written atomically.

Misuse cases compare stderr with golden files under tests/golden/cli/ (DASC_UPDATE_GOLDEN=1
rewrites them). They run `python -m dasc` in a temporary directory with relative paths, so the
messages are the same on every machine.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from dasc.cli.common import not_implemented, parse_overrides, require
from dasc.cli.main import main
from dasc.errors import DascError, UsageError
from dasc.fsutil import atomic_write_bytes, atomic_write_text, check_output_path

ROOT = Path(__file__).resolve().parent.parent

SEED = """\
# The seed article's example: max- or average-pooling, mixed by one sigmoid gate.
space pooling

param C = 16
param classes = 10
input image [1, 8, 8]

ops pools = { max_pool_3x3, avg_pool_3x3 }

network {
  x = relu(bn(conv(image, C, k=3)))
  y = choice(pools, x)
  return linear(gap(y), classes)
}

search {
  gate = sigmoid
}
"""


def _setup(tmp: Path) -> None:
    """The files the misuse cases refer to, by relative path."""
    (tmp / "seed.das").write_text(SEED, encoding="utf-8")
    (tmp / "folder").mkdir()
    (tmp / "folder.svg").mkdir()
    (tmp / "latin1.das").write_bytes(b"space caf\xe9\nparam C = 1\n")
    (tmp / "ugly.das").write_text("space   ugly\nparam C=16   # width\n", encoding="utf-8")


# (golden name, argv, expected exit status)
MISUSE = [
    ("unknown_flag", ["compile", "seed.das", "--frobnicate"], 2),
    ("misspelt_flag", ["compile", "seed.das", "--jsno"], 2),
    ("unknown_command", ["compil", "seed.das"], 2),
    ("missing_argument", ["compile"], 2),
    ("bad_choice", ["compile", "seed.das", "--emit", "onnx"], 2),
    ("set_not_integer", ["compile", "seed.das", "--set", "C=abc"], 2),
    ("set_no_equals", ["compile", "seed.das", "--set", "C"], 2),
    ("set_bad_name", ["compile", "seed.das", "--set", "2x=3"], 2),
    ("missing_file", ["compile", "nope.das"], 2),
    ("missing_file_suffix", ["compile", "seed"], 2),
    ("directory_as_file", ["compile", "folder"], 2),
    ("not_utf8", ["compile", "latin1.das"], 2),
    ("fmt_not_utf8", ["fmt", "latin1.das"], 2),
    ("render_unknown_extension", ["render", "seed.das", "-o", "seed.jpg"], 2),
    ("render_no_extension", ["render", "seed.das", "-o", "seed"], 2),
    ("render_missing_directory", ["render", "seed.das", "-o", "nodir/seed.svg"], 2),
    ("compile_output_missing_directory", ["compile", "seed.das", "-o", "nodir/ir.json"], 2),
    ("render_output_is_directory", ["render", "seed.das", "-o", "folder.svg"], 2),
    ("compile_output_is_input", ["compile", "seed.das", "-o", "./seed.das"], 2),
]


@pytest.mark.parametrize("name,argv,status", MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_is_one_error_and_exit_2(tmp_path, dasc, golden, name, argv, status):
    _setup(tmp_path)
    res = dasc(*argv, cwd=tmp_path)
    assert res.returncode == status, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""
    golden(f"cli/{name}.expected", res.stderr)


def test_fmt_check_on_unformatted_file_prints_diff_and_exits_1(tmp_path, dasc, golden):
    _setup(tmp_path)
    before = (tmp_path / "ugly.das").read_bytes()
    res = dasc("fmt", "--check", "ugly.das", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    golden("cli/fmt_check_unformatted.expected", res.stderr)
    assert res.stdout.startswith("--- ugly.das (current)\n+++ ugly.das (formatted)\n")
    assert "-space   ugly" in res.stdout and "+space ugly" in res.stdout
    assert (tmp_path / "ugly.das").read_bytes() == before  # --check writes nothing


def test_fmt_rewrites_in_place_then_check_passes(tmp_path, dasc):
    _setup(tmp_path)
    res = dasc("fmt", "ugly.das", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "ugly.das: formatted\n"
    text = (tmp_path / "ugly.das").read_text(encoding="utf-8")
    assert "# width" in text  # comments survive
    again = dasc("fmt", "--check", "ugly.das", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"check": True,
                                        "files": [{"file": "ugly.das", "formatted": True}]}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_shipped_spaces_are_formatted(dasc):
    spaces = sorted(str(p) for p in (ROOT / "spaces").glob("*.das"))
    if not spaces:
        pytest.skip("no shipped spaces yet")
    res = dasc("fmt", "--check", *spaces)
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- in-process


@pytest.mark.parametrize("argv", [["--help"], ["compile", "--help"], ["render", "-h"]])
def test_help_exits_0(capsys, argv):
    assert main(argv) == 0
    assert "usage: dasc" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dasc ")


def test_json_errors_are_json_on_stdout(capsys, tmp_path):
    assert main(["compile", str(tmp_path / "nope.das"), "--json"]) == 2
    captured = capsys.readouterr()
    err = json.loads(captured.out)["error"]
    assert err["kind"] == "UsageError" and "no such file" in err["message"]
    assert captured.err.startswith("dasc: error: no such file")


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    import dasc.cli.cmd_compile as cmd

    def interrupted(args, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "run", interrupted)
    assert main(["compile", "x.das"]) == 130
    assert capsys.readouterr().err == "dasc: interrupted\n"


def test_a_stop_under_json_is_a_json_object_on_stdout_too(capsys, monkeypatch):
    """A script reading stdout of `--json` gets one JSON document whatever happened."""
    import signal
    from pathlib import Path

    import dasc.cli.cmd_compile as cmd
    from dasc.runtime.stopping import Interrupted

    def terminated(args, ctx):
        raise Interrupted(Path("runs/x"), signal.SIGTERM)

    monkeypatch.setattr(cmd, "run", terminated)
    assert main(["compile", "x.das", "--json"]) == 143
    out = capsys.readouterr()
    assert json.loads(out.out) == {"interrupted": {
        "signal": "SIGTERM", "status": 143,
        "message": "search stopped by SIGTERM; resume with: dasc search --resume runs/x"}}
    assert out.err.startswith("dasc: search stopped by SIGTERM")


@pytest.mark.parametrize("command", ["search", "derive", "profile", "train", "export"])
def test_every_contract_command_exists(capsys, command):
    assert main([command, "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_missing_stages_are_clear_errors():
    err = not_implemented("search")
    assert err.render() == ("dasc: error: 'dasc search' is not implemented yet\n"
                            "hint: this command is part of the contract but has not been built "
                            "yet")
    with pytest.raises(DascError, match="feature X is not implemented yet"):
        require("dasc.no_such_module", "f", "feature X")
    with pytest.raises(DascError, match="feature Y is not implemented yet") as info:
        require("dasc.fsutil", "no_such_function", "feature Y")
    assert "dasc.fsutil.no_such_function" in info.value.hint
    assert require("dasc.fsutil", "atomic_write_text", "z") is atomic_write_text


def test_parse_overrides():
    assert parse_overrides(["C=16", "layers = 8", "C=-2", "n=+3"]) == {"C": -2, "layers": 8,
                                                                       "n": 3}
    for bad in ["C", "=3", "C=", "C=1.5", "C=0x10", "a-b=1"]:
        with pytest.raises(UsageError):
            parse_overrides([bad])


# ----------------------------------------------------------------------------- fsutil


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "one")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_follows_symlinks_and_writes_devices_in_place(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_text(fifo, "through")
        assert os.read(reader, 100) == b"through"
    finally:
        os.close(reader)
    assert fifo.exists() and not fifo.is_file()


def test_atomic_write_refuses_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")
    with pytest.raises(UsageError, match="is a directory"):
        check_output_path(tmp_path)


def test_atomic_write_leaves_target_intact_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    target.write_text("original")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# ----------------------------------------------------------------------------- compile


@pytest.fixture
def seed_space(tmp_path):
    pytest.importorskip("dasc.compiler.pipeline")
    pytest.importorskip("dasc.compiler.summary")
    path = tmp_path / "seed.das"
    path.write_text(SEED, encoding="utf-8")
    return path


def test_compile_json_parses(seed_space, dasc):
    res = dasc("compile", str(seed_space), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["architectures"] == 2
    assert "adapters" in data


def test_compile_text_and_ir_output(seed_space, tmp_path, dasc):
    pytest.importorskip("dasc.compiler.serialize")
    out = tmp_path / "ir.json"
    res = dasc("compile", str(seed_space), "--set", "C=8", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    assert res.stderr == f"wrote the IR to {out}\n"
    from dasc.compiler.serialize import load

    ir = load(json.loads(out.read_text()))
    assert ir.param("C") == 8


def test_compile_reports_errors_with_location(tmp_path, dasc):
    pytest.importorskip("dasc.compiler.pipeline")
    bad = tmp_path / "bad.das"
    bad.write_text(SEED.replace("choice(pools, x)", "choice(pols, x)"), encoding="utf-8")
    res = dasc("compile", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"{bad}:12:") and ": error: " in first
    assert "pols" in res.stderr and "^" in res.stderr


def test_compile_emit_fx(seed_space, dasc):
    pytest.importorskip("dasc.runtime.lower")
    res = dasc("compile", str(seed_space), "--emit", "fx")
    assert res.returncode == 0, res.stderr
    assert "def forward" in res.stdout


NO_TORCH = """
import json, sys
from dasc.cli.main import main
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("RESULT", argv[0], rc, len(loaded), file=sys.stderr)
"""


def test_front_end_does_not_import_torch(seed_space, tmp_path):
    """compile (text and JSON), fmt and render in one fresh interpreter: torch never loads."""
    import subprocess

    runs = [["compile", str(seed_space)], ["compile", str(seed_space), "--json"],
            ["fmt", "--check", str(seed_space)], ["render", str(seed_space), "-o",
                                                  str(tmp_path / "space.gv")]]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(runs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    results = [line.split()[1:] for line in proc.stderr.splitlines()
               if line.startswith("RESULT")]
    assert len(results) == 4, proc.stderr
    for (command, rc, torch_modules), argv in zip(results, runs):
        assert rc in (("0", "1") if command == "fmt" else ("0",)), (argv, proc.stderr)
        assert torch_modules == "0", f"{argv} imported torch"
