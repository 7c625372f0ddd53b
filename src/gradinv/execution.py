"""How an optimisation loop runs on its device: eager or compiled (and why), CUDA graphs, and
the fp32 precision of matrix products and convolutions.

A step of gradient inversion is hundreds to thousands of small kernels (a second-order
gradient through the victim model, the per-layer sums of the cost, Adam); on a GPU their
launches, not the arithmetic, set the pace. ``torch.compile`` fuses one whole iteration into a
few kernels, and CUDA graphs replay them with one launch. Compiling costs 30-130 s on a
2-core CPU (seconds with inductor's cache warm) and gains least where a step is compute-bound,
so ``auto`` compiles only on CUDA and only for loops long enough to repay it.

TF32 is off: cuDNN convolutions use it by default on Ampere and later GPUs, which rounds
their inputs to 10 mantissa bits; gradinv's default is the CPU's IEEE fp32, so a GPU audit
computes what a CPU audit does (``FP32_PRECISION``, recorded with every loop).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

import torch
from torch.utils._pytree import tree_flatten, tree_map_only

from .checks import check_choice, one_line

COMPILE_CHOICES = ("auto", "on", "off", "graphs")
# ``auto`` compiles a CUDA loop of at least this many iterations: a cold compile of ResNet-18's
# step takes about a minute and saves tens of ms per iteration (issue 18's measurements).
AUTO_MIN_ITERATIONS = 500
BACKEND = "inductor"
FP32_PRECISION = "ieee"  # TF32 off for cuBLAS matrix products and cuDNN convolutions

T = TypeVar("T")


@dataclass(frozen=True)
class Execution:
    """How one loop ran: ``mode`` is eager, compiled or compiled+graphs (compile's
    reduce-overhead mode, which captures CUDA graphs on a CUDA device); ``reason`` says why."""

    mode: str
    reason: str
    fp32_precision: str = FP32_PRECISION

    @property
    def compiled(self) -> bool:
        return self.mode != "eager"

    @property
    def graphs(self) -> bool:
        return self.mode == "compiled+graphs"

    def to_json(self) -> dict:
        return asdict(self)


def plan(setting: str, device: torch.device, iterations: int) -> Execution:
    """What the ``compile`` setting (``COMPILE_CHOICES``) means for a loop of ``iterations`` on
    ``device``: ``off`` eager, ``on`` compiled, ``graphs`` compiled with CUDA graphs (on a
    CUDA device), ``auto`` compiled with graphs on CUDA from ``AUTO_MIN_ITERATIONS`` on."""
    check_choice("compile", setting, COMPILE_CHOICES)
    cuda = device.type == "cuda"
    if setting == "off":
        return Execution("eager", "compile=off")
    if setting == "on":
        return Execution("compiled", "compile=on")
    if setting == "graphs":
        return Execution("compiled+graphs", "compile=graphs" + (
            "" if cuda else f" (on {device.type} the same graph runs without CUDA graphs)"))
    if not cuda:
        return Execution("eager", f"compile=auto: eager on {device.type} (compiling takes "
                         "longer than it saves in most runs there)")
    if iterations < AUTO_MIN_ITERATIONS:
        return Execution("eager", f"compile=auto: {iterations} iterations do not repay "
                         f"compiling (from {AUTO_MIN_ITERATIONS})")
    return Execution("compiled+graphs", f"compile=auto: {iterations} iterations on cuda")


def batching_pays(device: torch.device) -> bool:
    """Whether matching several updates as rows of one batched pass beats one after the
    other on ``device``: on a GPU, where a step is launch-bound; not on a CPU, where a larger
    batch is compute-bound and no faster (``benchmarks/RESULTS.md``). ``gradinv audit
    --batch-updates auto`` and GIML's meta-batch follow it."""
    return device.type == "cuda"


class Runner(Generic[T]):
    """``fn`` run as ``execution`` says: compiled as one graph (``fullgraph``: a graph break
    is a failure, not a silent partly-eager step), or eager. When compiling fails, the first
    call warns with one line and runs ``fn`` eagerly from then on (``execution`` says so); a
    later runner of the same step (label, device and shapes) in the process does not try again.

    ``fn`` must be safe to call again after a failed compile: it is traced before it runs.
    """

    # Steps that failed to compile in this process, by (label, device, shapes of the first
    # call's tensors), with the reason: compiling again would fail again, after a minute.
    failed: dict[tuple, str] = {}

    def __init__(self, fn: Callable[..., T], execution: Execution, label: str) -> None:
        self.eager, self.execution, self.label = fn, execution, label
        self.fn: Callable[..., T] = fn
        self.untried = execution.compiled
        if execution.compiled:
            self.fn = torch.compile(fn, fullgraph=True, backend=BACKEND,
                                    mode="reduce-overhead" if execution.graphs else None)

    def __call__(self, *args: object) -> T:
        if not self.execution.graphs:
            return self._call(*args)
        # A replay overwrites the previous one's outputs: the caller gets copies.
        torch.compiler.cudagraph_mark_step_begin()
        return tree_map_only(torch.Tensor, torch.clone, self._call(*args))

    def _call(self, *args: object) -> T:
        if not self.untried:
            return self.fn(*args)
        self.untried = False
        key = (self.label, *tree_flatten(tree_map_only(
            torch.Tensor, lambda t: (t.device.type, tuple(t.shape)), args))[0])
        if key in Runner.failed:
            return self._fall_back(f"compiling failed earlier in this process "
                                   f"({Runner.failed[key]})", args)
        try:
            return self.fn(*args)
        except Exception as err:  # any failure to compile; a real error recurs eagerly
            Runner.failed[key] = one_line(err)
            warnings.warn(f"gradinv: compiling the {self.label} step failed, running it eagerly "
                          f"({one_line(err)})", RuntimeWarning, stacklevel=3)
            return self._fall_back(f"compiling failed ({one_line(err)})", args)

    def _fall_back(self, reason: str, args: tuple) -> T:
        self.execution, self.fn = Execution("eager", reason), self.eager
        return self.fn(*args)

    def keep_in_place(self, tensors: Iterable[torch.Tensor]) -> None:
        """Tell CUDA graphs that ``tensors``, which every call updates in place, keep their
        memory (graphs skip steps that mutate other inputs)."""
        if self.execution.graphs:
            for t in tensors:
                torch._dynamo.mark_static_address(t)


@contextmanager
def fp32_precision() -> Iterator[None]:
    """Set cuBLAS and cuDNN fp32 precision to ``FP32_PRECISION`` (IEEE: no TF32) for the
    block, and restore what was set before."""
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    before = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = FP32_PRECISION
    try:
        yield
    finally:
        for b, value in zip(backends, before):
            b.fp32_precision = value
