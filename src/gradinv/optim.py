"""The optimisation loop of GI, GI-z, GIAS, prior projection and GIML: Adam over R restarts
in one batched pass.

Each attack supplies a single-restart ``cost_fn(variables, fixed) -> (total, matching)``;
``fixed`` holds per-restart tensors that are not optimised (GIAS's latent codes). Batched mode
maps ``grad`` of it over the leading restart dimension with ``torch.func.vmap``, so R restarts cost
one forward/backward of an R-times larger batch instead of R Python-level attacks. Sequential mode
runs the identical loop one restart at a time; it is the reference for tests and benchmarks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap

from .progress import Progress

Variables = dict[str, torch.Tensor]
CostFn = Callable[[Variables, Variables], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class OptimisationResult:
    variables: Variables
    matching_costs: torch.Tensor
    history: list[float]


def milestones(iterations: int) -> list[int]:
    """The step schedule of Geiping et al.: lr / 10 at 3/8, 5/8 and 7/8 of the run."""
    return [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]


def optimise_restarts(
    init: Variables,
    cost_fn: CostFn,
    *,
    fixed: Variables | None = None,
    iterations: int,
    lr: float,
    signed: bool = True,
    project: Callable[[Variables], None] | None = None,
    batched: bool = True,
    label: str = "attack",
    progress: bool = True,
) -> OptimisationResult:
    """Minimise ``cost_fn`` independently for every restart (leading dim of each variable)."""
    fixed = fixed or {}
    restarts = next(iter(init.values())).shape[0]
    if batched:
        return _adam_loop(init, fixed, cost_fn, iterations, lr, signed, project, label, progress)
    parts = [
        _adam_loop({k: v[r:r + 1] for k, v in init.items()},
                   {k: v[r:r + 1] for k, v in fixed.items()}, cost_fn, iterations, lr, signed,
                   project, f"{label} restart {r + 1}/{restarts}", progress, vmapped=False)
        for r in range(restarts)
    ]
    return OptimisationResult(
        variables={k: torch.cat([p.variables[k] for p in parts]) for k in init},
        matching_costs=torch.cat([p.matching_costs for p in parts]),
        history=[min(h) for h in zip(*(p.history for p in parts))],
    )


def _adam_loop(
    init: Variables,
    fixed: Variables,
    cost_fn: CostFn,
    iterations: int,
    lr: float,
    signed: bool,
    project: Callable[[Variables], None] | None,
    label: str,
    show: bool,
    vmapped: bool = True,
) -> OptimisationResult:
    variables = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    step = _batched_step(cost_fn) if vmapped else _single_step(cost_fn)
    optimiser = torch.optim.Adam(variables.values(), lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones(iterations), 0.1)
    bar = Progress(label, iterations, enabled=show)
    history: list[float] = []
    for it in range(iterations):
        grads, (_, matching) = step({k: v.detach() for k, v in variables.items()}, fixed)
        for k, v in variables.items():
            v.grad = grads[k].sign() if signed else grads[k]
        optimiser.step()
        scheduler.step()
        if project is not None:
            with torch.no_grad():
                project(variables)
        history.append(float(matching.min()))
        bar.update(it + 1, history[-1])
    final = {k: v.detach() for k, v in variables.items()}
    matching = vmap(lambda v, f: cost_fn(v, f)[1])(final, fixed).detach()
    return OptimisationResult(final, matching, history)


def _batched_step(cost_fn: CostFn) -> Callable:
    return vmap(grad_and_value(cost_fn, has_aux=True))


def _single_step(cost_fn: CostFn) -> Callable:
    """The same step for exactly one restart, without vmap (the sequential reference)."""
    step = grad_and_value(cost_fn, has_aux=True)

    def run(variables: Variables, fixed: Variables):
        grads, (total, matching) = step({k: v[0] for k, v in variables.items()},
                                        {k: v[0] for k, v in fixed.items()})
        return {k: g[None] for k, g in grads.items()}, (total[None], matching[None])

    return run
