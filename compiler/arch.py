"""Architectures: what an IR lets one decide, and `Arch`, one set of decisions.

An `Arch` is keyed the way the super-network is: each choice by its α key (shared instances
share it) and each `keep` by its select key. Only *active* choices need an op: a choice on an
edge that its keep node dropped is not decided (DARTS's genotype lists ops on kept edges only).
`arch.json` (docs/arch-json.md) is its file form.

The decision structure lives here too (`Structure`): which region owns each node, which choices
sit on an edge of a keep node. Every pass that applies an Arch (dp, constraints, prune, cost)
reads the same structure, so they cannot disagree about which choices are decided.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from dasc.compiler.ir import IR, ChoiceNode, CombineNode, OpNode, Region
from dasc.errors import ConstraintError, UsageError
from dasc.fsutil import input_problem

FORMAT = "dasc-arch"
VERSION = 1
NETWORK = "network"
_FIT_HINT = "check that the architecture was made for this space and these --set values"


@dataclass(frozen=True)
class Structure:
    """What the decisions of an IR are, independent of any rule.

    `order` is the IR's nodes in topological order (computed once: passes walk it often).
    `owner` maps each node to its region (cell instance id or "network"). An *exclusive keep
    edge* is a choice whose only consumer is one input position of a `keep` sum (possibly via
    single-input ops such as an adapter, the `chain`): it is decided only if that position is
    kept, so those nodes are `deferred` into the keep node's step. `no_none` holds every choice
    on a keep edge, where `none` is never a candidate (dropping an edge is what `keep` does).
    """

    order: tuple[tuple[str, Any], ...]
    owner: Mapping[str, str]
    regions: tuple[Region, ...]
    edge_choice: Mapping[tuple[str, int], str]
    deferred: Mapping[str, tuple[str, int]]
    no_none: frozenset[str]
    by_id: Mapping[str, Region]
    owned: Mapping[str, frozenset[str]]

    @property
    def choices(self) -> list[tuple[str, ChoiceNode]]:
        return [(n, p) for n, p in self.order if isinstance(p, ChoiceNode)]

    def region(self, region_id: str) -> Region:
        return self.by_id[region_id]

    def members(self, region_id: str) -> set[str]:
        """The nodes a region owns (tabulated once: a space may have thousands of regions)."""
        return set(self.owned.get(region_id, ()))

    def allowed(self, ir: IR, choice_id: str) -> tuple[int, ...]:
        """Indices of the candidates this choice may pick."""
        node = ir.node(choice_id)
        banned = choice_id in self.no_none
        return tuple(i for i, c in enumerate(node.candidates) if not (banned and c.zero))

    def active(self, choice_id: str, kept: Mapping[str, Sequence[int]]) -> bool:
        """Whether the choice is decided, given the kept positions of each keep node id."""
        edge = self.deferred.get(choice_id)
        return edge is None or edge[1] in kept.get(edge[0], ())

    def view(self, ir: IR, arch: Any, partial: bool = False
             ) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
        """An architecture applied to every instance: the chosen candidate of each choice node
        (None where a keep dropped its edge) and the kept positions of each keep node.

        Checks only what it needs (`check_arch_fits` gives the full diagnostic); `partial`:
        decisions the arch lacks are left out (None, nothing kept) instead of an error.
        """
        ops = dict(arch.choices)
        keeps = {k: tuple(v) for k, v in arch.keeps}
        kept: dict[str, tuple[int, ...]] = {}
        for n, p in self.order:
            if isinstance(p, CombineNode) and p.keep is not None:
                if p.select not in keeps and partial:
                    keeps[p.select] = ()
                elif p.select not in keeps:
                    raise UsageError(f"the architecture does not say which inputs "
                                     f"'{p.select}' keeps", hint=_FIT_HINT)
                kept[n] = keeps[p.select]
        chosen: dict[str, Any] = {}
        for n, p in self.choices:
            if not self.active(n, kept):
                chosen[n] = None
                continue
            name = ops.get(p.alpha)
            cand = next((c for c in p.candidates if c.name == name), None)
            if cand is None and partial:
                chosen[n] = None
            elif cand is None:
                raise UsageError(f"the architecture does not choose an op for '{p.alpha}'"
                                 if name is None else
                                 f"the architecture picks '{name}' for '{p.alpha}', "
                                 f"which is not one of its candidates", hint=_FIT_HINT)
            else:
                chosen[n] = cand
        return chosen, kept


def network_region(ir: IR) -> Region:
    """The network body's region, synthesized when the IR does not list it."""
    for r in ir.regions:
        if r.id == NETWORK:
            return r
    return Region(NETWORK, None, NETWORK, (ir.input,), ir.output, True)


def structure(ir: IR) -> Structure:
    """Regions, owners and keep edges of an IR (see `Structure`)."""
    regions = tuple(r for r in ir.regions if r.id != NETWORK)
    regions = (network_region(ir),) + regions
    ids = {r.id for r in regions}
    order = tuple(ir.nodes())
    owner = {n: (p.scope if p.scope and p.scope in ids else NETWORK) for n, p in order}
    uses: dict[str, int] = {n: 0 for n in ir.graph.nodes}
    for _, p in order:
        for x in p.inputs:
            uses[x] += 1
    edge_choice: dict[tuple[str, int], str] = {}
    deferred: dict[str, tuple[str, int]] = {}
    no_none: set[str] = set()
    for n, p in order:
        if not (isinstance(p, CombineNode) and p.keep is not None):
            continue
        for pos, x in enumerate(p.inputs):
            chain, cur = [], x
            while True:
                q = ir.node(cur)
                if not (isinstance(q, OpNode) and len(q.inputs) == 1 and uses[cur] == 1):
                    break
                chain.append(cur)
                cur = q.inputs[0]
            if not isinstance(ir.node(cur), ChoiceNode):
                continue
            no_none.add(cur)
            same = all(owner[c] == owner[n] for c in chain + [cur])
            if uses[cur] == 1 and same and uses[x] == 1:
                edge_choice[(n, pos)] = cur
                for c in chain + [cur]:
                    deferred[c] = (n, pos)
    owned: dict[str, set[str]] = {}
    for n, o in owner.items():
        owned.setdefault(o, set()).add(n)
    return Structure(order, owner, regions, edge_choice, deferred, frozenset(no_none),
                     {r.id: r for r in regions}, {k: frozenset(v) for k, v in owned.items()})


# ----------------------------------------------------------------------------- Arch

@dataclass(frozen=True)
class Arch:
    """One architecture: `choices` ((α key, candidate name), ...) and `keeps` ((select key,
    kept input positions), ...), both sorted by key so that equal architectures compare equal."""

    choices: tuple[tuple[str, str], ...] = ()
    keeps: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(sorted((str(k), str(v))
                                                         for k, v in self.choices)))
        object.__setattr__(self, "keeps", tuple(sorted(
            (str(k), tuple(sorted(int(p) for p in v))) for k, v in self.keeps)))

    def op(self, alpha: str) -> str | None:
        return dict(self.choices).get(alpha)

    def to_json(self, space: str) -> dict[str, Any]:
        """The `arch.json` document (docs/arch-json.md)."""
        return {"format": FORMAT, "version": VERSION, "space": space,
                "choices": dict(self.choices),
                "keeps": {k: list(v) for k, v in self.keeps}}

    @staticmethod
    def from_json(data: Mapping[str, Any] | str) -> "Arch":
        """Parse an `arch.json` document (a dict or its text); UsageError if malformed."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise UsageError(f"architecture is not valid JSON: {exc.msg} at line "
                                 f"{exc.lineno}", hint="give an arch.json written by "
                                 "`dasc search` or `dasc derive`") from None
            except RecursionError:  # json's decoder recurses: `[[[[...` thousands deep
                raise UsageError("architecture is not an arch.json: its JSON is nested too "
                                 "deeply to read", hint="give an arch.json written by "
                                 "`dasc search` or `dasc derive`") from None
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise UsageError("not an arch.json document (no \"format\": \"dasc-arch\")",
                             hint="give an arch.json written by `dasc search` or `dasc derive`")
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION or version < 1:
            raise UsageError(f"arch.json version {version!r} is not supported (this dasc reads "
                             f"version {VERSION})", hint="upgrade dasc or re-derive the "
                             "architecture with this version")
        choices, keeps = data.get("choices", {}), data.get("keeps", {})
        ok = (isinstance(choices, Mapping) and isinstance(keeps, Mapping)
              and all(isinstance(v, str) for v in choices.values())
              and all(isinstance(v, list) and all(isinstance(p, int) and not isinstance(p, bool)
                                                  for p in v) for v in keeps.values()))
        if not ok:
            raise UsageError("arch.json: \"choices\" must map α keys to op names and \"keeps\" "
                             "select keys to lists of input positions",
                             hint="see docs/arch-json.md for the format")
        return Arch(tuple(choices.items()), tuple((k, tuple(v)) for k, v in keeps.items()))


def from_decisions(decisions: Sequence[Any]) -> Arch:
    """The Arch of a DP solution (dp.Decision leaves of kind choice/keep)."""
    return Arch(tuple((d.key, d.value) for d in decisions if d.kind == "choice"),
                tuple((d.key, tuple(d.value)) for d in decisions if d.kind == "keep"))


def read_arch(source: str, ir: IR | None = None) -> Arch:
    """An Arch from what a user gives `--arch`: an arch.json path or its JSON text, or (with
    `ir`, whose keys they are mapped onto) a DARTS genotype or NAS-Bench-201 string, literal or
    in a file. Checked against `ir` if given."""
    from dasc.compiler import archstrings  # it builds on this module

    if archstrings.is_arch_string(source):
        if ir is None:
            raise UsageError("a DARTS genotype or NAS-Bench-201 string needs its space",
                             hint="read it together with the compiled space")
        return archstrings.read_any(source, ir)
    text = source
    if not source.lstrip().startswith("{"):
        path = Path(source)
        problem = input_problem(path, pipes=True)
        if problem:
            hint = ("give an arch.json path, its JSON text, a DARTS genotype or a NAS-Bench-201 "
                    "string")
            if problem == "is a directory" and (path / "arch.json").is_file():
                hint = f"did you mean {path / 'arch.json'}?"
            raise UsageError(f"architecture file '{source}' {problem}", hint=hint)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read architecture '{source}': {exc}",
                             hint="give a readable UTF-8 arch.json file") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        data = text
    arch = Arch.from_json(data)
    if ir is not None:
        space = data.get("space") if isinstance(data, Mapping) else None
        if space is not None and space != ir.name:
            raise UsageError(f"the architecture is for space '{space}', not '{ir.name}'",
                             hint="use an architecture derived from this space")
        check_arch_fits(ir, arch)
    return arch


def write_arch(path: str, arch: Arch, space: str) -> None:
    """Write `arch.json` atomically."""
    from dasc.fsutil import atomic_write_json

    atomic_write_json(path, arch.to_json(space))


def decision_keys(ir: IR, st: Structure | None = None
                  ) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[int, int]]]:
    """α key -> names of the candidates it may pick; select key -> (inputs, kept)."""
    st = st or structure(ir)
    choices: dict[str, tuple[str, ...]] = {}
    for n, p in st.choices:
        choices.setdefault(p.alpha, tuple(p.candidates[i].name for i in st.allowed(ir, n)))
    keeps = {p.select: (len(p.inputs), p.keep) for _, p in st.order
             if isinstance(p, CombineNode) and p.keep is not None}
    return choices, keeps


def active_alphas(ir: IR, st: Structure, keeps: Mapping[str, Sequence[int]]) -> list[str]:
    """α keys decided under these keeps (select key -> positions), in IR order."""
    kept = {n: tuple(keeps.get(p.select, ())) for n, p in st.order
            if isinstance(p, CombineNode) and p.keep is not None}
    return list(dict.fromkeys(p.alpha for n, p in st.choices if st.active(n, kept)))


def check_arch_fits(ir: IR, arch: Arch) -> None:
    """UsageError unless `arch` decides exactly what `ir` asks: every keep, every active
    choice with one of its candidates. Ops given for dropped edges are ignored."""
    st = structure(ir)
    choices, keeps = decision_keys(ir, st)
    problems: list[str] = []
    given_keeps = dict(arch.keeps)
    for key, positions in arch.keeps:
        if key not in keeps:
            problems.append(f"unknown input selection '{key}'")
            continue
        n, k = keeps[key]
        if len(positions) != k or len(set(positions)) != k or not all(0 <= p < n
                                                                        for p in positions):
            problems.append(f"'{key}' must keep {k} distinct inputs out of positions "
                            f"0..{n - 1}, not {list(positions)}")
    problems += [f"no inputs kept for '{key}'" for key in keeps if key not in given_keeps]
    for key, op in arch.choices:
        if key not in choices:
            problems.append(f"unknown choice '{key}'")
        elif op not in choices[key]:
            problems.append(f"'{key}' picks '{op}', which is not one of: "
                            f"{', '.join(choices[key])}")
    if not problems:
        given = dict(arch.choices)
        problems += [f"no op chosen for '{key}'" for key in active_alphas(ir, st, given_keeps)
                     if key not in given]
    if problems:
        shown = problems[:1] + [p for p in problems[1:6]]
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise UsageError(f"the architecture does not fit space '{ir.name}': {problems[0]}",
                         notes=tuple(shown[1:]) + ((more.strip(),) if more else ()),
                         hint=f"{_FIT_HINT}; it expects {len(choices)} choice keys such as "
                              f"'{next(iter(choices), '')}' and {len(keeps)} keep keys")


def canonical(ir: IR, arch: Arch) -> Arch:
    """The same architecture without ops for dropped edges (what `==` should compare)."""
    active = set(active_alphas(ir, structure(ir), dict(arch.keeps)))
    return Arch(tuple((k, v) for k, v in arch.choices if k in active), arch.keeps)


def enumerate_archs(ir: IR) -> Iterator[Arch]:
    """Every architecture of the space, by brute force (tests and tiny spaces only)."""
    st = structure(ir)
    choices, keeps = decision_keys(ir, st)
    keys = list(keeps)
    subsets = [list(itertools.combinations(range(keeps[k][0]), keeps[k][1])) for k in keys]
    for combo in itertools.product(*subsets):
        kept = dict(zip(keys, combo))
        active = active_alphas(ir, st, kept)
        for ops in itertools.product(*(choices[a] for a in active)):
            yield Arch(tuple(zip(active, ops)), tuple(kept.items()))


def random_arch(ir: IR, rng: Any, *, constrained: bool = True) -> Arch:
    """An architecture drawn uniformly at random (`rng`: a `random.Random`), from those that
    satisfy the space's constraints unless `constrained=False`. Exact, via the counting DP."""
    from dasc.compiler.count import sample_decisions  # count imports this module

    decisions = sample_decisions(ir, rng, ir.rules if constrained else ())
    if decisions is None:
        raise ConstraintError(f"space '{ir.name}' has no architecture to sample",
                              span=ir.span, hint="relax its constraints")
    return from_decisions(decisions)
