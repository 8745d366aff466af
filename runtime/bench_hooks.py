"""One search step of a shipped space, packaged for `bench/supernet_step.py`.

Kept in the package (not in bench/) so the benchmark times exactly the code `dasc search` runs:
the same lowering, the same bilevel step functions, the same optimizers.
"""

from __future__ import annotations

from typing import Callable

import torch

from dasc.errors import Sources
from dasc.runtime import bilevel
from dasc.runtime.lower import LoweringOptions, arch_parameters, lower, weight_parameters


def search_lowering() -> LoweringOptions:
    """The lowering `dasc search` uses by default (DASC_BENCH_LOWERING=k=v,... to vary it)."""
    import os

    from dasc.runtime.config import SearchConfig

    cfg = SearchConfig()
    fields = {"channels_last": bool(cfg.channels_last), "checkpoint": bool(cfg.checkpoint),
              "recompute_pointwise": bool(cfg.recompute_pointwise)}
    for item in filter(None, os.environ.get("DASC_BENCH_LOWERING", "").split(",")):
        key, _, value = item.partition("=")
        fields[key.strip()] = value.strip() not in ("0", "false", "False")
    return LoweringOptions(**fields)


def make_step(space_path: str, C: int, layers: int, batch: int, order: int,
              overrides: dict[str, int] | None = None, device: str = "cpu",
              options: LoweringOptions | None = None) -> Callable[[], None]:
    """A zero-argument callable doing one architecture step and one weight step."""
    from dasc.compiler.pipeline import compile_space

    params = {"C": C, "layers": layers, **(overrides or {})}
    ir = compile_space(space_path, params, Sources())
    torch.manual_seed(0)
    model = lower(ir, options or search_lowering()).to(device)
    model.train()
    weights, alphas = weight_parameters(model), arch_parameters(model)
    parts = bilevel.StepParts(model, weights, alphas, lambda: torch.zeros((), device=device))
    w_opt = torch.optim.SGD(weights, 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(alphas, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    shape = ir.node(ir.input).shape
    classes = ir.node(ir.output).shape.c
    g = torch.Generator().manual_seed(0)

    def batch_of() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(batch, shape.c, shape.h, shape.w, generator=g).to(device)
        y = torch.randint(0, classes, (batch,), generator=g).to(device)
        return x, y

    train, valid = batch_of(), batch_of()

    def step() -> None:
        a_opt.zero_grad(set_to_none=True)
        if order == 2:
            bilevel.second_order_alpha_grad(parts, train, valid, 0.025, 0.9, 3e-4, w_opt)
        else:
            bilevel.first_order_alpha_grad(parts, valid)
        a_opt.step()
        bilevel.weight_step(parts, train, w_opt, 5.0)
        if device == "cuda":
            torch.cuda.synchronize()

    return step
