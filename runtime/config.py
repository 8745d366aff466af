"""Search configuration: the space's `search { }` defaults, overridden by the command line.

One frozen dataclass built once by the CLI layer and passed down; nothing reads a global.
The hardware-aware settings (`cost*`, `budget`, `latency_table`) are described in
docs/hardware-aware.md; costs, targets and budgets share one unit per `cost_kind`: millions of
parameters or MACs, or milliseconds.
Every setting is validated with the span of the line that set it, so a typo in a space file
points at that line and a bad command-line value names the flag.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Mapping

from dasc.errors import Span, UsageError
from dasc.runtime.gates import GATE_KINDS, SCHEDULES


@dataclass(frozen=True)
class SearchConfig:
    """Defaults follow DARTS (Liu et al. 2019) except where the small digits task needs less."""

    epochs: int = 10
    batch_size: int = 64
    order: int = 1
    gate: str = "softmax"
    tau: float = 1.0
    tau_end: float = 1.0
    schedule: str = "constant"
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    l1: float = 0.0
    entropy: float = 0.0
    cost: float = 0.0
    cost_kind: str = "macs"
    cost_form: str = "additive"
    cost_target: float = 0.0
    cost_beta: float = 0.6
    budget: float = 0.0
    latency_table: str = ""
    partial_channels: int = 1
    channels_last: int = 1
    checkpoint: int = 0
    recompute_pointwise: int = 1
    threshold: float = 0.5
    train_portion: float = 0.5
    seed: int = 0
    device: str = "cpu"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {
    "gate": GATE_KINDS,
    "schedule": SCHEDULES,
    "cost_kind": ("params", "macs", "latency"),
    "cost_form": ("additive", "multiplicative"),
    "device": ("cpu", "cuda"),
}
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed accepts
_POSITIVE = {"epochs", "batch_size", "tau", "tau_end", "partial_channels"}
_NONNEGATIVE = {"w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "arch_lr",
                "arch_weight_decay", "grad_clip", "l1", "entropy", "cost", "seed",
                "cost_target", "cost_beta", "budget"}


def _convert(key: str, value: object, span: Span | None, origin: str) -> object:
    names = {f.name: f for f in fields(SearchConfig)}
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"known settings: {', '.join(names)}"
        raise UsageError(f"unknown search setting `{key}` ({origin})", span, hint)
    kind = type(getattr(SearchConfig(), key))
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            converted: object = int(value)  # type: ignore[arg-type]
        elif kind is float:
            converted = float(value)  # type: ignore[arg-type]
        else:
            converted = str(value)
    except (TypeError, ValueError):
        raise UsageError(f"search setting `{key}` needs {'an integer' if kind is int else 'a number'}, "
                         f"got {value!r} ({origin})", span,
                         f"write e.g. `{key} = {getattr(SearchConfig(), key)}`") from None
    if kind is float and not math.isfinite(converted):  # type: ignore[arg-type]
        # NaN passes every comparison below and would surface later as a "NaN loss".
        raise UsageError(f"search setting `{key}` must be a finite number, got {converted} "
                         f"({origin})", span, f"use e.g. `{key} = {getattr(SearchConfig(), key)}`")
    if key in _CHOICES and converted not in _CHOICES[key]:
        raise UsageError(f"search setting `{key}` cannot be {converted!r} ({origin})", span,
                         f"choose one of: {', '.join(_CHOICES[key])}")
    if key in ("channels_last", "checkpoint", "recompute_pointwise") and converted not in (0, 1):
        raise UsageError(f"search setting `{key}` must be 0 or 1, got {converted} ({origin})", span,
                         f"write `{key} = 1` to turn it on")
    if key == "order" and converted not in (1, 2):
        raise UsageError(f"search setting `order` must be 1 or 2, got {converted} ({origin})", span,
                         "1 is first-order DARTS, 2 the unrolled second-order gradient")
    if key in _POSITIVE and converted <= 0:  # type: ignore[operator]
        raise UsageError(f"search setting `{key}` must be positive, got {converted} ({origin})",
                         span, f"use e.g. `{key} = {getattr(SearchConfig(), key)}`")
    if key in _NONNEGATIVE and converted < 0:  # type: ignore[operator]
        raise UsageError(f"search setting `{key}` must not be negative, got {converted} ({origin})",
                         span, f"use e.g. `{key} = {getattr(SearchConfig(), key)}`")
    if key == "seed" and converted > MAX_SEED:  # type: ignore[operator]
        # torch.manual_seed takes 64 bits; a larger seed crashed after RUN_DIR was created
        raise UsageError(f"search setting `seed` must be at most 2**64 - 1, got {converted} "
                         f"({origin})", span, "use e.g. `seed = 0`")
    if key in ("train_portion", "threshold") and not 0 < converted < 1:  # type: ignore[operator]
        raise UsageError(f"search setting `{key}` must lie strictly between 0 and 1 ({origin})",
                         span, f"use e.g. `{key} = {getattr(SearchConfig(), key)}`")
    return converted


def resolve_config(space_settings, overrides: Mapping[str, object],
                   origins: Mapping[str, str] | None = None) -> SearchConfig:
    """Space defaults (IR `SearchSetting`s with spans) then CLI overrides, each validated."""
    values: dict[str, object] = {}
    spans: dict[str, Span | None] = {}
    for setting in space_settings:
        values[setting.key] = _convert(setting.key, setting.value, setting.span, "in the space file")
        spans[setting.key] = setting.span
    for key, value in overrides.items():
        origin = (origins or {}).get(key, f"--{key.replace('_', '-')}")
        values[key] = _convert(key, value, None, f"from {origin}")
        spans[key] = None
    if "tau" in values and "tau_end" not in values:
        values["tau_end"] = values["tau"]
    config = SearchConfig(**values)  # type: ignore[arg-type]
    _check_cost(config, spans)
    return config


def _check_cost(c: SearchConfig, spans: Mapping[str, Span | None]) -> None:
    """Settings of the hardware-aware objective that only make sense together."""
    if c.cost_form == "multiplicative" and c.cost_target <= 0:
        raise UsageError("the multiplicative cost form, loss * (E[cost] / cost_target)^cost_beta, "
                         "needs a positive `cost_target`", spans.get("cost_form"),
                         "state the target in the cost unit (millions of params or MACs, or "
                         "ms), e.g. `cost_target = 0.5`")
    uses = c.cost > 0 or c.cost_form == "multiplicative" or c.budget > 0
    if c.cost_kind == "latency" and uses and not c.latency_table:
        raise UsageError("`cost_kind = latency` needs a latency table", spans.get("cost_kind"),
                         "measure one with `dasc profile SPACE -o latency.json` and set "
                         "`latency_table = \"latency.json\"`")
