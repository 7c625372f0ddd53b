"""The shared optimisation loop: Adam and its schedule against torch's own, the history kept on
the device, and the compiled loop against the eager one (one tiny model: compiling is slow)."""
import warnings

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.func import functional_call

from gradinv import execution
from gradinv.checks import GradinvError
from gradinv.execution import plan
from gradinv.optim import lr_schedule, milestones, optimise_restarts
from gradinv.progress import Progress


def _quadratic(v, fixed):
    cost = (v["x"] - fixed["target"]).pow(2).sum() + v["y"].pow(2).mean()
    return cost, cost


def _torch_adam_loop(x, y, target, iterations, lr, signed):
    """The reference: torch.optim.Adam and MultiStepLR, one restart."""
    params = [x.clone().requires_grad_(True), y.clone().requires_grad_(True)]
    optimiser = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones(iterations), 0.1)
    for _ in range(iterations):
        optimiser.zero_grad()
        cost, _ = _quadratic({"x": params[0], "y": params[1]}, {"target": target})
        cost.backward()
        for p in params:
            p.grad = p.grad.sign() if signed else p.grad
        optimiser.step()
        scheduler.step()
    return params


@pytest.mark.parametrize("signed", [False, True])
def test_loop_is_adam_with_the_step_schedule(signed):
    g = torch.Generator().manual_seed(0)
    x, y, target = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, generator=g), torch.randn(
        2, 3, 4, generator=g)
    result = optimise_restarts({"x": x, "y": y}, _quadratic, fixed={"target": target},
                               iterations=16, lr=0.1, signed=signed, progress=False)
    for r in range(2):
        px, py = _torch_adam_loop(x[r], y[r], target[r], 16, 0.1, signed)
        torch.testing.assert_close(result.variables["x"][r], px.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.variables["y"][r], py.detach(), rtol=1e-5, atol=1e-6)
    assert result.execution.mode == "eager" and len(result.history) == 16


@pytest.mark.parametrize("iterations", [1, 2, 3, 8, 17])
def test_lr_schedule_is_multistep_lr(iterations):
    optimiser = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones(iterations), 0.1)
    expected = []
    for _ in range(iterations):
        expected.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    torch.testing.assert_close(lr_schedule(0.3, iterations, torch.device("cpu")),
                               torch.tensor(expected, dtype=torch.float32))


class _Reads:
    """A value that counts how often it is read on the host."""

    def __init__(self) -> None:
        self.reads = 0

    def __float__(self) -> float:
        self.reads += 1
        return 0.5


def test_progress_reads_the_value_only_when_it_draws(capsys):
    silent, shown = _Reads(), _Reads()
    off, on = Progress("x", 100, enabled=False), Progress("x", 100)
    for step in range(1, 101):
        off.update(step, silent)
        on.update(step, shown)
    assert silent.reads == 0
    assert shown.reads == len(capsys.readouterr().err.splitlines()) == 11  # 0 %, 10 %, ... 100 %


@pytest.mark.parametrize("setting, device, iterations, mode", [
    ("off", "cuda", 5000, "eager"), ("on", "cpu", 10, "compiled"),
    ("graphs", "cpu", 10, "compiled+graphs"), ("auto", "cpu", 10**5, "eager"),
    ("auto", "cuda", execution.AUTO_MIN_ITERATIONS - 1, "eager"),
    ("auto", "cuda", execution.AUTO_MIN_ITERATIONS, "compiled+graphs"),
])
def test_compile_plan(setting, device, iterations, mode):
    planned = plan(setting, torch.device(device), iterations)
    assert planned.mode == mode and planned.reason.startswith(f"compile={setting}")
    assert planned.to_json()["fp32_precision"] == "ieee"


def test_unknown_compile_setting_is_refused():
    with pytest.raises(GradinvError, match="compile"):
        plan("fast", torch.device("cpu"), 10)


def test_fp32_precision_is_ieee_inside_and_restored_after():
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with execution.fp32_precision():
        assert conv.fp32_precision == torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert conv.fp32_precision == before


def test_a_step_that_does_not_compile_warns_once_and_runs_eagerly():
    def breaks_the_graph(v, fixed):
        torch._dynamo.graph_break()  # a no-op when eager
        return _quadratic(v, fixed)

    init = {"x": torch.ones(2, 3), "y": torch.ones(2, 1)}
    fixed = {"target": torch.zeros(2, 3)}
    eager = optimise_restarts(init, breaks_the_graph, fixed=fixed, iterations=4, lr=0.1,
                              compile="off", progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallen, again = (optimise_restarts(init, breaks_the_graph, fixed=fixed, iterations=4,
                                           lr=0.1, compile="on", label="graph-breaking",
                                           progress=False) for _ in range(2))
    ours = [w for w in caught if "gradinv" in str(w.message)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert fallen.execution.mode == again.execution.mode == "eager"
    assert fallen.execution.reason.startswith("compiling failed (")
    # the second attack of the same step does not spend a compile on a known failure
    assert again.execution.reason.startswith("compiling failed earlier in this process (")
    for run in (fallen, again):
        torch.testing.assert_close(run.variables["x"], eager.variables["x"], rtol=0, atol=0)


def _tiny_matching_cost(seed):
    """A cosine gradient-matching cost on a tiny convolutional model, as GI's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(8, 3))
    params = {k: v.detach() for k, v in model.named_parameters()}
    labels = torch.tensor([0, 2])

    def gradient(images):
        def loss(p):
            logits = functional_call(model, p, (images,))
            return nn.functional.cross_entropy(logits, labels)
        return torch.func.grad(loss)(params)

    truth = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    observed = gradient(truth)

    def cost_fn(v, _fixed):
        pred = gradient(v["images"])
        dot = sum((pred[k] * observed[k]).sum() for k in pred)
        norms = (sum(p.pow(2).sum() for p in pred.values()).sqrt()
                 * sum(o.pow(2).sum() for o in observed.values()).sqrt())
        matching = 1 - dot / norms
        return matching + 1e-2 * v["images"].abs().mean(), matching

    return cost_fn


def test_compiled_loop_equals_eager_and_is_compiled_once():
    init = {"images": torch.rand(3, 2, 1, 4, 4, generator=torch.Generator().manual_seed(1))}
    kw = dict(iterations=12, lr=0.05, project=lambda v: v["images"].clamp_(0, 1),
              progress=False)
    runs = {}
    for setting in ("off", "on", "graphs"):
        runs[setting] = optimise_restarts(init, _tiny_matching_cost(0), compile=setting, **kw)
    graphs = counters["stats"]["unique_graphs"]
    again = optimise_restarts(init, _tiny_matching_cost(1), compile="on", **kw)
    assert counters["stats"]["unique_graphs"] == graphs  # another target reuses the graph
    assert runs["on"].execution.mode == "compiled" and again.execution.mode == "compiled"
    for setting in ("on", "graphs"):
        torch.testing.assert_close(runs[setting].variables["images"],
                                   runs["off"].variables["images"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.tensor(runs[setting].history),
                                   torch.tensor(runs["off"].history), rtol=1e-4, atol=1e-6)
    # on the CPU the CUDA-graph mode is the graph-free graph: the same numbers exactly
    torch.testing.assert_close(runs["graphs"].variables["images"], runs["on"].variables["images"],
                               rtol=0, atol=0)
