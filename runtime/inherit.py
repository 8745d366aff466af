"""Inherited weights: start a derived network from a search's supernet (or a train run).

The derived network of an architecture (`compiler.prune`) names the ops of a chosen candidate
`<choice>.<op>`; the supernet keeps the same op inside the choice's mixed op, under
`<choice>.candidates.<op>`. Mapping one onto the other is what lets `dasc train --weights`
fine-tune what the search already learned and `dasc export --weights` ship it; the tests hold
the derived network with inherited weights equal to the supernet with its gates pinned to the
architecture, which is the definition of "the same weights".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from dasc.compiler.ir import IR, ChoiceNode, OpNode
from dasc.errors import Span, UsageError
from dasc.runtime.checkpoint import fingerprint, load_checkpoint


@dataclass(frozen=True)
class Inherited:
    """Which weights came from the supernet (`copied`) and which stay freshly initialised."""

    state: dict[str, torch.Tensor]
    copied: tuple[str, ...]
    fresh: tuple[str, ...]


def inherit_key_map(super_ir: IR, derived_ir: IR, arch) -> dict[str, str]:
    """Derived module target -> supernet module path holding the same op's weights.

    Fixed ops keep their node id, hence their target. An op of a chosen candidate is the
    derived node `<choice>.<op or label>` (`prune`; its `group` is the choice id), while the
    supernet holds it in the choice's mixed op at `<choice target>.candidates.<cand>`, and at
    `.ops.<k>` inside it when the candidate is a block of several ops.
    """
    from dasc.compiler.prune import block_ids
    from dasc.runtime.lower import _candidate_key, module_target

    cand_keys: dict[str, list[str]] = {}
    for node_id, node in super_ir.nodes():
        if isinstance(node, ChoiceNode):
            used: set[str] = set()
            cand_keys[node_id] = [_candidate_key(i, c, used) for i, c in enumerate(node.candidates)]
    out: dict[str, str] = {}
    for node_id, node in derived_ir.nodes():
        if not isinstance(node, OpNode):
            continue
        target = module_target(node_id, node.scope)
        choice = super_ir.graph.nodes.get(node.group, {}).get("node") if node.group else None
        if not isinstance(choice, ChoiceNode):
            out[target] = target
            continue
        name = arch.op(choice.alpha)
        index = next((i for i, c in enumerate(choice.candidates) if c.name == name), None)
        if index is None:
            continue
        cand = choice.candidates[index]
        ids = block_ids(node.group, cand)
        if node_id not in ids:
            continue
        base = (f"{module_target(node.group, choice.scope)}.candidates."
                f"{cand_keys[node.group][index]}")
        out[target] = base if len(cand.nodes) == 1 and cand.nodes[0].inputs == (-1,) \
            else f"{base}.ops.{ids.index(node_id)}"
    return out


def inherit_weights(super_ir: IR, super_state: Mapping[str, torch.Tensor], derived_ir: IR,
                    arch, derived_state: Mapping[str, torch.Tensor]) -> Inherited:
    """The derived network's state with every tensor the supernet has for it copied over.

    A tensor is copied only when its supernet counterpart exists with the same shape (a
    PC-DARTS supernet's partial-channel candidates, or search-time BN without affine
    parameters, have none); the rest keep `derived_state`'s values and are listed in `fresh`.
    """
    key_map = inherit_key_map(super_ir, derived_ir, arch)
    state = {k: v.clone() for k, v in derived_state.items()}
    copied, fresh = [], []
    for key in derived_state:
        source = None
        for target in sorted(key_map, key=len, reverse=True):
            if key.startswith(target + "."):
                source = key_map[target] + key[len(target):]
                break
        value = super_state.get(source) if source else None
        if value is not None and tuple(value.shape) == tuple(derived_state[key].shape):
            state[key] = value.detach().to(derived_state[key].dtype).clone()
            copied.append(key)
        else:
            fresh.append(key)
    return Inherited(state, tuple(copied), tuple(fresh))


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the best one of a directory: a train dir's best.pt, a search
    run's checkpoints/last.pt."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "best.pt", p / "checkpoints" / "last.pt", p / "last.pt"):
            if candidate.is_file():
                return candidate
    return p


def load_weights(path: str | Path, super_ir: IR, derived_ir: IR, arch,
                 derived_state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Initial weights for the derived network from a `dasc train` or `dasc search` checkpoint.

    A train checkpoint of this very network is loaded as it is; a search checkpoint of this
    space (same fingerprint as the super-network) gives inherited weights. Returns the state
    and a small report for the command's output.
    """
    file = checkpoint_path(path)
    state = load_checkpoint(file)
    if state.get("fingerprint") == fingerprint(derived_ir):
        return dict(state["model"]), {"weights": str(file), "source": "train",
                                      "copied": len(state["model"]), "fresh": 0}
    if state.get("fingerprint") == fingerprint(super_ir):
        got = inherit_weights(super_ir, state["model"], derived_ir, arch, derived_state)
        return got.state, {"weights": str(file), "source": "search",
                           "copied": len(got.copied), "fresh": len(got.fresh)}
    raise UsageError(f"checkpoint {file} was made for another space, architecture or --set "
                     "values", Span.of_file(str(file)),
                     "use a checkpoint of `dasc train` with the same --arch, or of "
                     "`dasc search` on the same space and --set values")
