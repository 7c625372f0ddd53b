"""The optimisation loop of GI, GI-z, GIAS, prior projection and GIML: Adam over R restarts
in one batched pass.

Each attack supplies a single-restart ``cost_fn(variables, fixed) -> (total, matching)``;
``fixed`` holds per-restart tensors that are not optimised (GIAS's latent codes). Batched mode
maps ``grad`` of it over the leading restart dimension with ``torch.func.vmap``, so R restarts cost
one forward/backward of an R-times larger batch instead of R Python-level attacks. Sequential mode
runs the identical loop one restart at a time; it is the reference for tests and benchmarks.

One iteration (gradient, optional sign, Adam, projection) is one function of tensors, with the
learning rate and Adam's step count as 0-d tensors, so ``torch.compile`` turns it into one graph
(``gradinv.execution``: compiled once per model, shapes, restarts and device, then reused). The
loop never waits for the device: the matching cost of every iteration stays there until the
progress bar redraws or the loop ends.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap
from torch.optim.adam import adam

from .execution import Execution, Runner, fp32_precision, plan
from .progress import Progress

Variables = dict[str, torch.Tensor]
CostFn = Callable[[Variables, Variables], tuple[torch.Tensor, torch.Tensor]]
Step = Callable[[Variables, Variables], tuple[Variables, tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class OptimisationResult:
    variables: Variables
    matching_costs: torch.Tensor
    row_history: torch.Tensor  # [iterations, restarts]: every restart's matching cost
    execution: Execution  # how the loop ran (compiled or eager) and why

    @property
    def history(self) -> list[float]:
        """The lowest matching cost over the restarts at every iteration."""
        return self.row_history.amin(1).tolist()


def milestones(iterations: int) -> list[int]:
    """The step schedule of Geiping et al.: lr / 10 at 3/8, 5/8 and 7/8 of the run."""
    return [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]


def lr_schedule(lr: float, iterations: int, device: torch.device) -> torch.Tensor:
    """The learning rate of every iteration (``milestones``), as ``MultiStepLR`` steps it."""
    rates, current, cuts = [], lr, milestones(iterations)
    for it in range(iterations):
        for _ in range(cuts.count(it)):
            current *= 0.1
        rates.append(current)
    return torch.tensor(rates, dtype=torch.float32, device=device)


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
    compile: str = "auto",
    label: str = "attack",
    progress: bool = True,
) -> OptimisationResult:
    """Minimise ``cost_fn`` independently for every restart (leading dim of each variable).

    ``project`` maps the variables back onto their domain in place after every step;
    ``compile`` is one of ``execution.COMPILE_CHOICES``."""
    fixed = fixed or {}
    device = next(iter(init.values())).device
    restarts = next(iter(init.values())).shape[0]
    # One restart needs no vmap (whose overhead costs a fifth of an eager LeNet step).
    step = _batched_step(cost_fn) if batched and restarts > 1 else _single_step(cost_fn)
    runner = Runner(_iteration(step, signed, project), plan(compile, device, iterations), label)
    schedule = lr_schedule(lr, iterations, device)
    with fp32_precision():
        if batched:
            final, history = _adam_loop(init, fixed, runner, schedule, label, progress)
        else:
            parts = [_adam_loop({k: v[r:r + 1] for k, v in init.items()},
                                {k: v[r:r + 1] for k, v in fixed.items()}, runner, schedule,
                                f"{label} restart {r + 1}/{restarts}", progress)
                     for r in range(restarts)]
            final = {k: torch.cat([variables[k] for variables, _ in parts]) for k in init}
            history = torch.cat([h for _, h in parts], dim=1)
        matching = vmap(lambda v, f: cost_fn(v, f)[1])(final, fixed).detach()
    return OptimisationResult(final, matching, history.cpu(), runner.execution)


def _adam_loop(init: Variables, fixed: Variables, runner: Runner[torch.Tensor],
               schedule: torch.Tensor, label: str, show: bool
               ) -> tuple[Variables, torch.Tensor]:
    """Run ``runner`` once per entry of ``schedule`` (the learning rates) from ``init``; return
    the final variables and every restart's matching cost at every iteration (on the
    device, [iterations, restarts])."""
    variables = {k: v.detach().clone() for k, v in init.items()}
    exp_avgs = [torch.zeros_like(v) for v in variables.values()]
    exp_avg_sqs = [torch.zeros_like(v) for v in variables.values()]
    steps = [torch.zeros((), device=v.device) for v in variables.values()]
    runner.keep_in_place([*variables.values(), *exp_avgs, *exp_avg_sqs, *steps])
    restarts = next(iter(init.values())).shape[0]
    history = torch.empty(len(schedule), restarts, device=schedule.device)
    bar = Progress(label, len(schedule), enabled=show)
    for it, lr in enumerate(schedule):
        history[it] = runner(variables, fixed, exp_avgs, exp_avg_sqs, steps, lr)
        bar.update(it + 1, _Lowest(history[it]))
    return variables, history


class _Lowest:
    """The lowest of one iteration's matching costs, reduced only when the progress bar
    reads it (a redraw), so the loop adds no kernel per iteration for it."""

    def __init__(self, costs: torch.Tensor) -> None:
        self.costs = costs

    def __float__(self) -> float:
        return float(self.costs.min())


def _iteration(step: Step, signed: bool, project: Callable[[Variables], None] | None
               ) -> Callable[..., torch.Tensor]:
    """One iteration, updating the variables and Adam's state in place; returns every
    restart's matching cost. Eagerly, Adam is torch's fused kernel (one pass over
    each tensor); traced by ``torch.compile``, its foreach form, which the compiler fuses."""

    def iterate(variables: Variables, fixed: Variables, exp_avgs: list[torch.Tensor],
                exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor],
                lr: torch.Tensor) -> torch.Tensor:
        grads, (_, matching) = step(variables, fixed)
        directions = [grads[k].sign() if signed else grads[k] for k in variables]
        traced = torch.compiler.is_compiling()
        adam(list(variables.values()), directions, exp_avgs, exp_avg_sqs, [], steps,
             fused=not traced, foreach=traced, capturable=traced, amsgrad=False, beta1=0.9,
             beta2=0.999, lr=lr, weight_decay=0.0, eps=1e-8, maximize=False)
        if project is not None:
            project(variables)
        return matching.detach()

    return iterate


def _batched_step(cost_fn: CostFn) -> Step:
    return vmap(grad_and_value(cost_fn, has_aux=True))


def _single_step(cost_fn: CostFn) -> Step:
    """The same step for exactly one restart, without vmap (the sequential reference)."""
    step = grad_and_value(cost_fn, has_aux=True)

    def run(variables: Variables, fixed: Variables):
        grads, (total, matching) = step({k: v[0] for k, v in variables.items()},
                                        {k: v[0] for k, v in fixed.items()})
        return {k: g[None] for k, g in grads.items()}, (total[None], matching[None])

    return run
