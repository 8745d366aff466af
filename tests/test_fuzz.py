"""The front end survives anything: fuzzed, mutated and hostile `.das` inputs.

Why: a user's first contact with dasc is a space file they wrote, half-wrote or broke. Whatever
it contains, `parse -> compile` must end in a result or a `DascError` that points at a line
(`file:line:col`), within a bounded time and memory, never a traceback or a hang. And `fmt`,
which rewrites files in place, must never change what a file means.

Inputs come from four sources: grammar-aware mutations of the shipped spaces (tokens deleted,
duplicated, swapped, replaced; truncations; huge numbers; deep nesting; random bytes; splices),
hypothesis-generated token soup and arbitrary text, hand-made hostile files (10 MB, non-UTF-8,
runaway arithmetic and loops), and the regression corpus in tests/fuzz_corpus/ (every input
that ever found a bug). Each input runs in-process (fast), bounded by an alarm; a sample runs
through the real CLI in subprocesses with a memory limit. `DASC_FUZZ_EXAMPLES=N` multiplies
the CI budget (the default keeps this file near a minute) for a longer hunt.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SPACES, run_dasc
from dasc.cli.cmd_fmt import format_text
from dasc.cli.main import main
from dasc.compiler.pipeline import compile_space
from dasc.dsl.parser import KEYWORDS, parse
from dasc.dsl.printer import format_module
from dasc.errors import DascError, Sources

CORPUS = ROOT / "tests" / "fuzz_corpus"
SCALE = max(1, int(os.environ.get("DASC_FUZZ_EXAMPLES", "0") or 0) // 100) if os.environ.get(
    "DASC_FUZZ_EXAMPLES") else 0
# A hang, not a slow input: the worst inputs allowed (256,000 characters of dense tokens, a
# million-step loop) take ~10 s on a loaded 2-core machine; the slowest are printed at the end.
PER_INPUT_S = 60.0
LOCATED = re.compile(r"^\S.*:\d+:\d+: error: ", re.M)
TALLY: Counter = Counter()
SLOWEST: list[tuple[float, str]] = []
FAILURES: list[str] = []
SEEDS = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPACES.glob("*.das"))}
TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
                   r"|[A-Za-z_][A-Za-z0-9_]*|\.\.|[=!<>]=|\s+|.", re.S)
HUGE = ("0", "1", "-1", "7", "1000000000", "99999999999999999999", "9223372036854775808",
        "1" + "0" * 400, "0.5", "1e308", "4294967297")
VOCAB = sorted({t for text in SEEDS.values() for t in TOKEN.findall(text) if t.strip()}
               | set(KEYWORDS) | set("{}[](),;=+-*/%<>.\"") | set(HUGE))


def budget(n: int) -> int:
    """Examples for one property: the CI default, or scaled up by DASC_FUZZ_EXAMPLES."""
    return n * SCALE if SCALE else n


# ------------------------------------------------------------------------------ the driver


class Hang(Exception):
    """Raised by the alarm: the input took longer than PER_INPUT_S."""


@contextmanager
def deadline(seconds: float):
    """SIGALRM-based time limit (pytest runs tests on the main thread, even under xdist)."""
    def fire(signum, frame):
        raise Hang()
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def drive(data: str | bytes, label: str, workdir: Path, overrides: dict | None = None,
          filename: str | None = None) -> str:
    """One input through load -> compile, then the formatter round trip when it parses.

    Returns the outcome ("ok" or the DascError kind); anything else is recorded in FAILURES
    with the input saved next to it, so it can be copied into tests/fuzz_corpus/.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    path = workdir / (filename or f"in{sum(TALLY.values())}.das")
    path.write_bytes(raw)
    started = time.perf_counter()
    outcome = "ok"
    try:
        with deadline(PER_INPUT_S):
            try:
                compile_space(str(path), overrides or {}, Sources())
            except DascError as err:
                outcome = _located(err, path)
            if outcome == "ok" or outcome == "error:located":
                _round_trip(raw, path)
    except Hang:
        outcome = "hang"
    except Exception as exc:  # noqa: BLE001 - anything else is the bug being hunted
        outcome = f"crash:{type(exc).__name__}: {str(exc)[:200]}"
    seconds = time.perf_counter() - started
    SLOWEST.append((seconds, label))
    SLOWEST.sort(reverse=True)
    del SLOWEST[5:]
    kind = outcome if outcome == "ok" or outcome.startswith("error") else "FAIL"
    TALLY[kind] += 1
    if kind == "FAIL":
        keep = workdir / f"failing-{len(FAILURES)}.das"
        keep.write_bytes(raw)
        FAILURES.append(f"{label}: {outcome} (input saved as {keep})")
    return outcome


def _located(err: DascError, path: Path) -> str:
    """A DascError must point somewhere and render without failing."""
    shown = err.render(Sources())
    echoed = len(err.message) + len(err.hint or "") + sum(len(n) for n in err.notes)
    if len(shown) > echoed + 600:  # the quoted line is clipped, whatever the file looks like
        return f"crash:diagnostic of {len(shown):,} characters"
    if err.span is None or err.span.line < 1 or err.span.col < 1:
        return f"crash:unlocated {type(err).__name__}: {err.message}"
    return "error:located"


def _round_trip(raw: bytes, path: Path) -> None:
    """`fmt` must keep the meaning: format_text re-parses and compares the AST itself."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        once = format_text(text, str(path))
    except DascError:
        return
    assert format_module(parse(once, str(path))) == once, "fmt is not idempotent"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def assert_no_failures(before: int) -> None:
    new = FAILURES[before:]
    assert not new, f"{len(new)} inputs broke the front end:\n" + "\n".join(new[:10])


# ------------------------------------------------------------------------------ mutations


def _nest(token: str, kind: str, depth: int) -> str:
    """`token` buried `depth` levels deep in one of the language's nesting forms."""
    if kind == "parens":
        return "(" * depth + token + ")" * depth
    if kind == "neg":
        return "-" * depth + token
    if kind == "not":
        return "not " * depth + token
    if kind == "cond":
        return "if 1 then " * depth + token + " else 0" * depth
    return "f(" * depth + token + ")" * depth  # calls


MUTATIONS = ("delete", "duplicate", "swap", "replace", "insert", "truncate", "number", "nest",
             "bytes", "splice")


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A shipped space with 1-4 grammar-aware mutations; returns (description, bytes)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    tokens = TOKEN.findall(SEEDS[name])
    steps = []
    blob = None
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(MUTATIONS))
        i = draw(st.integers(0, max(0, len(tokens) - 1)))
        steps.append(f"{op}@{i}")
        if not tokens:
            break
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op in ("replace", "insert"):
            word = draw(st.sampled_from(VOCAB))
            tokens[i:i + (op == "replace")] = [" ", word, " "]
        elif op == "truncate":
            del tokens[i:]
        elif op == "number":
            spots = [k for k, t in enumerate(tokens) if t[:1].isdigit()] or [i]
            tokens[draw(st.sampled_from(spots))] = draw(st.sampled_from(HUGE))
        elif op == "nest":
            spots = [k for k, t in enumerate(tokens) if t[:1].isdigit() or t.isidentifier()]
            k = draw(st.sampled_from(spots or [i]))
            tokens[k] = _nest(tokens[k], draw(st.sampled_from(("parens", "neg", "not", "cond",
                                                               "calls"))),
                              draw(st.sampled_from((3, 40, 149, 151, 400, 5000))))
        elif op == "splice":
            other = TOKEN.findall(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
            a = draw(st.integers(0, len(other)))
            tokens[i:i] = other[a:a + draw(st.integers(1, 60))]
        else:  # bytes: anything, including NUL, invalid UTF-8 and lone continuation bytes
            blob = (i, draw(st.binary(min_size=1, max_size=12)))
    raw = "".join(tokens).encode("utf-8")
    if blob is not None:
        at = min(blob[0], len(raw))
        raw = raw[:at] + blob[1] + raw[at:]
    return f"{name} [{' '.join(steps)}]", raw


token_soup = st.lists(st.sampled_from(VOCAB), max_size=80).map(" ".join)

FUZZ = settings(deadline=None, database=None, derandomize=not SCALE,
                suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ properties


@settings(FUZZ, max_examples=budget(300))
@given(mutated())
def test_mutated_shipped_spaces(workdir, case):
    before = len(FAILURES)
    drive(case[1], case[0], workdir)
    assert_no_failures(before)


@settings(FUZZ, max_examples=budget(120))
@given(token_soup)
def test_token_soup(workdir, text):
    before = len(FAILURES)
    drive("space soup\n" + text, "token soup", workdir)
    assert_no_failures(before)


@settings(FUZZ, max_examples=budget(80))
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(bytes)))
def test_arbitrary_text_and_bytes(workdir, data):
    before = len(FAILURES)
    drive(data, "arbitrary", workdir)
    assert_no_failures(before)


# ------------------------------------------------------------------------------ hostile files


def _squares(n: int) -> str:
    """Each parameter the square of the previous: 20 digits become 20·2^n digits."""
    lines = ["space squares", "param p0 = 4294967297"]
    lines += [f"param p{i} = p{i - 1} * p{i - 1}" for i in range(1, n)]
    return "\n".join(lines + _TAIL) + "\n"


_TAIL = ["input image [1, 8, 8]", "network {", "  return linear(gap(conv(image, 4, k=3)), 10)", "}"]


def _network(*body: str) -> str:
    return "\n".join(["space hostile", "input image [1, 8, 8]", "network {", *body,
                      "  return linear(gap(conv(image, 4, k=3)), 10)", "}"]) + "\n"


HOSTILE: dict[str, bytes | str] = {
    "ten_mb_comment": "# " + "x" * 10_000_000 + "\n",
    "ten_mb_of_params": "space big\n" + "".join(f"param p{i} = {i}\n" for i in range(600_000)),
    "latin1": "space caf\xe9\n".encode("latin-1"),
    "utf16_bom": "space x\n".encode("utf-16"),
    "nul_bytes": b"space x\x00\nparam C = 1\n",
    "lone_continuation": b"space x\n\x80\x80\n",
    "only_bom": "\ufeff",
    "empty": "",
    "crlf": SEEDS["pooling.das"].replace("\n", "\r\n"),
    "cr_only": SEEDS["pooling.das"].replace("\n", "\r"),
    "parens_100k": "space x\nparam p = " + "(" * 100_000 + "1" + ")" * 100_000 + "\n",
    "negations_100k": "space x\nparam p = " + "-" * 100_000 + "1\n",
    "cond_1000": "space x\nparam p = " + "if 1 then " * 1000 + "1" + " else 0" * 1000 + "\n",
    "long_name": "space " + "a" * 1_000_000 + "\n",
    "huge_literal": "space x\nparam C = " + "9" * 100_000 + "\n",
    "squares": _squares(40),
    "nested_loops": _network("  x = 0", "  for i in 0 .. 1000 {", "    for j in 0 .. 1000 {",
                             "      for k in 0 .. 1000 {", "        x = x + 1", "      }",
                             "    }", "  }"),
    "loop_billion": _network("  for i in 0 .. 1000000000 {", "    y = i", "  }"),
    "division_by_zero": _network("  x = 1 / (2 - 2)"),
    "self_include": 'include "self.das"\nspace x\n',
    "escaping_include": 'include "../../../../../../etc/passwd"\nspace x\n',
    "absolute_include": 'include "/etc/passwd"\nspace x\n',
    "directory_include": 'include "."\nspace x\n',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file(workdir, name):
    before = len(FAILURES)
    started = time.perf_counter()
    drive(HOSTILE[name], f"hostile {name}", workdir, filename=f"{name}.das")
    assert_no_failures(before)
    assert time.perf_counter() - started < PER_INPUT_S


OVERSIZED = [("darts.das", {"layers": 10**9}), ("darts.das", {"C": 10**9}),
             ("darts.das", {"C": 99999999999999999999}), ("darts.das", {"layers": -5}),
             ("darts.das", {"C": 0}), ("nb201.das", {"C": 10**30}),
             ("mobile.das", {"C": 10**9}), ("digits.das", {"classes": 10**12})]


@pytest.mark.parametrize("space,overrides", OVERSIZED, ids=lambda v: str(v)[:40])
def test_absurd_parameters_are_refused_or_fine(workdir, space, overrides):
    """A billion layers must be refused up front, not by running out of memory."""
    before = len(FAILURES)
    drive(SEEDS[space], f"{space} --set {overrides}", workdir, overrides)
    assert_no_failures(before)


# ------------------------------------------------------------------------------ corpus


def corpus() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.das"))


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_regression_corpus(workdir, path):
    """Every input that once found a bug; a sidecar NAME.set holds `--set` lines."""
    sidecar = path.with_suffix(".set")
    overrides = {}
    if sidecar.exists():
        for line in sidecar.read_text().split():
            key, _, value = line.partition("=")
            overrides[key] = int(value)
    before = len(FAILURES)
    drive(path.read_bytes(), f"corpus {path.name}", workdir, overrides)
    assert_no_failures(before)


# ------------------------------------------------------------------------------ the real CLI


def _limited_memory() -> None:
    """2 GiB of address space: a runaway allocation becomes a crash we see, not a frozen box."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


CLI_SAMPLE = ["ten_mb_comment", "ten_mb_of_params", "latin1", "nul_bytes", "parens_100k",
              "squares", "huge_literal", "escaping_include"]


def _cli(args: list[str], cwd: Path) -> tuple[int, str]:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "dasc", *args], cwd=cwd, capture_output=True,
                          timeout=120, stdin=subprocess.DEVNULL, preexec_fn=_limited_memory,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def _check_cli(rc: int, err: str, what: str) -> None:
    assert "Traceback" not in err, f"{what}: traceback\n{err[-3000:]}"
    assert rc in (0, 1, 2), f"{what}: exit status {rc}\n{err[-2000:]}"
    if rc == 2:
        assert LOCATED.search(err), f"{what}: diagnostic without file:line:col\n{err[:2000]}"
        assert err.count("Traceback") == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_SAMPLE)
def test_cli_survives_hostile_files(tmp_path, name):
    data = HOSTILE[name]
    path = tmp_path / "in0.das"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    for args in (["compile", "in0.das"], ["fmt", "--check", "in0.das"],
                 ["render", "in0.das", "-o", "out.gv"]):
        rc, err = _cli(args, tmp_path)
        _check_cli(rc, err, f"dasc {' '.join(args)} on {name}")
        TALLY[f"cli:{args[0]}:exit{rc}"] += 1


@pytest.mark.parametrize("setting", ["layers=1000000000", "C=1000000000",
                                     "C=99999999999999999999", "layers=10**9"])
def test_cli_absurd_set_values(setting):
    """`--set` values that would build a monster: a clear refusal or a symbolic answer, fast."""
    started = time.perf_counter()
    rc, err = _cli(["compile", "spaces/darts.das", "--set", setting], ROOT)
    assert time.perf_counter() - started < 60
    assert "Traceback" not in err and rc in (0, 2), err[-2000:]
    TALLY[f"cli:compile --set:exit{rc}"] += 1


def test_cli_sample_of_mutations_in_process(tmp_path, capsys):
    """A deterministic sample of mutants through `main()`: exit status and a located message."""
    import random

    rng = random.Random(6)
    for n in range(budget(12)):
        seed = rng.choice(sorted(SEEDS))
        tokens = TOKEN.findall(SEEDS[seed])
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(tokens))
            tokens[i:i + rng.randint(0, 1)] = [" ", rng.choice(VOCAB), " "]
        path = tmp_path / f"m{n}.das"
        path.write_text("".join(tokens), encoding="utf-8")
        for args in (["compile", str(path)], ["fmt", "--check", str(path)],
                     ["render", str(path), "-o", str(tmp_path / "out.gv")]):
            with deadline(PER_INPUT_S):
                rc = main(args)
            err = capsys.readouterr().err
            _check_cli(rc, err, f"dasc {' '.join(args)} ({seed} mutant)")
            TALLY[f"cli:{args[0]}:exit{rc}"] += 1


# ------------------------------------------------------------------------------ the figures


def test_zz_summary(capsys, request):
    """Print how hard we tried (the numbers docs/robustness.md quotes); runs last in the file."""
    inputs = sum(v for k, v in TALLY.items() if not k.startswith("cli:"))
    lines = [f"fuzz: {inputs} inputs through parse -> compile -> fmt: "
             + ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items()) if not k.startswith("cli:")),
             "fuzz: CLI runs: " + ", ".join(f"{k[4:]} {v}" for k, v in sorted(TALLY.items())
                                           if k.startswith("cli:")),
             "fuzz: slowest inputs: " + "; ".join(f"{s:.1f}s {label[:60]}" for s, label in SLOWEST)]
    request.node.add_report_section("call", "fuzz summary", "\n".join(lines))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not FAILURES, "\n".join(FAILURES[:10])
