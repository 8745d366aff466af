"""What `dasc train`'s last.pt carries to continue exactly, and taking it back safely.

At the end of every epoch last.pt holds, beside the model, the optimizer's momentum, the
schedule, the epochs' records and the best model so far. A state read back may have been edited
by hand, so it is checked against the network and the settings before the first step: a bad
field is a located error, not a failure deep in a step or after the last epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from dasc.errors import Span, UsageError

if TYPE_CHECKING:
    from dasc.runtime.train import TrainConfig


def resume_state(opt, sched, metrics: list[dict], best: tuple[float, float], best_epoch: int,
                  best_model: Mapping[str, torch.Tensor]) -> dict:
    """What last.pt needs beyond the model to continue exactly: the optimizer's momentum, the
    schedule's position, the epochs' records and the best model so far (best.pt is written
    apart, so a kill between the two files must not pair a best.pt with the wrong epoch)."""
    return {"opt": opt.state_dict(), "sched": sched.state_dict(), "metrics": list(metrics),
            "best": list(best), "best_epoch": best_epoch, "best_model": dict(best_model),
            "rng": torch.get_rng_state()}


def restore(last: Mapping[str, object], model: nn.Module, opt, sched, config: TrainConfig,
             path: Path):
    """Load a last.pt written by `resume_state`; returns (next epoch, metrics, best score,
    best epoch, best model). The caller has checked the fingerprint and the format; what is
    checked here is that a hand-edited state cannot fail later, deep in a training step."""
    try:
        state = last["resume"]
        model.load_state_dict(last["model"])  # type: ignore[arg-type]
        opt.load_state_dict(state["opt"])  # type: ignore[index]
        sched.load_state_dict(state["sched"])  # type: ignore[index]
        torch.set_rng_state(state["rng"])  # type: ignore[index]
        restored = (int(last["epoch"]), list(state["metrics"]),  # type: ignore[index]
                    tuple(float(v) for v in state["best"]),  # type: ignore[index]
                    int(state["best_epoch"]), dict(state["best_model"]))  # type: ignore[index]
        _check_restored(restored, model, opt, sched, config)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise UsageError(f"the resume state in {path} is damaged ({exc})"[:300],
                         Span.of_file(str(path)), "train again with --force") from None
    return restored


def _check_restored(restored: tuple, model: nn.Module, opt, sched, config: TrainConfig) -> None:
    """ValueError naming the first part of a restored state that cannot be continued."""
    epoch, metrics, best, best_epoch, best_model = restored
    if not 0 < epoch <= config.epochs or not 0 < best_epoch <= epoch:
        raise ValueError(f"epoch {epoch}, best epoch {best_epoch} of {config.epochs}")
    if len(metrics) != epoch or not all(isinstance(m, dict) and all(
            isinstance(v, (int, float)) for v in m.values()) for m in metrics):
        raise ValueError("the epochs' records")
    if len(best) != 2 or not all(math.isfinite(v) for v in best):
        raise ValueError("the best score")
    shapes = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    if {k: (getattr(v, "shape", None), getattr(v, "dtype", None))
            for k, v in best_model.items()} != shapes:
        raise ValueError("the best model does not fit the network")
    for group in opt.param_groups:
        for p in group["params"]:
            buffer = opt.state.get(p, {}).get("momentum_buffer")
            if buffer is not None and (not torch.is_tensor(buffer) or buffer.shape != p.shape):
                raise ValueError("a momentum buffer does not fit its parameter")
    if (sched.T_max, sched.last_epoch, sched.eta_min) != (config.epochs, epoch, config.lr_min):
        raise ValueError("the learning-rate schedule")
