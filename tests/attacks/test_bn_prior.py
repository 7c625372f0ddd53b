"""The BatchNorm-statistics prior (Yin et al. 2021): used when the threat model grants the
client's BN statistics, and without them every attack computes exactly what it did before."""
from dataclasses import replace

import pytest
import torch

from gradinv import execution
from gradinv.attacks import create, prepare_target
from gradinv.data import private_batch
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.optim import optimise_restarts
from gradinv.priors import DCGANGenerator, Prior
from gradinv.types import GradinvError, ThreatModel

SHAPE = (1, 16, 16)
FAST = {"iterations": 4, "restarts": 2}


@pytest.fixture(scope="module")
def convnet_case(default_data):
    """A width-4 ConvNet in train mode and a batch of two; observations with and without BN stats."""
    model = build_model("convnet", channels=1, image_size=16, width=4, seed=0)
    batch = private_batch(default_data, 2, size=16, channels=1)
    update = compute_update(model, batch, mode="train")
    granted = observe(update, ThreatModel(model_mode="train", bn_stats_known=True))
    withheld = observe(update, ThreatModel(model_mode="train"))
    return model, batch, granted, withheld


def make(name: str, **kw):
    if name != "gi":
        torch.manual_seed(0)
        kw["prior"] = Prior(DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32), 4)
    return create(name, **{**FAST, **kw})


def run(name: str, model, observation, **kw):
    return make(name, **kw).reconstruct(model, observation, image_shape=SHAPE, seed=1,
                                        progress=False)


def test_distance_is_zero_at_the_client_batch(convnet_case):
    model, batch, granted, withheld = convnet_case
    target = prepare_target(model, granted, image_shape=SHAPE, device=torch.device("cpu"))
    assert len(target.bn_stats) == 5  # every BatchNorm layer of the ConvNet
    assert float(target.bn_prior(batch.images, 1.0)) < 1e-5
    assert float(target.bn_prior(torch.rand(2, *SHAPE), 1.0)) > 0.1
    assert float(target.bn_prior(torch.rand(2, *SHAPE), 0.0)) == 0.0
    blind = prepare_target(model, withheld, image_shape=SHAPE, device=torch.device("cpu"))
    assert blind.bn_stats is None and blind.bn_prior(torch.rand(2, *SHAPE), 1.0) == 0.0


@pytest.mark.parametrize("name", ["gi", "gi-z", "gias"])
def test_granted_statistics_change_the_result(name, convnet_case):
    model, _, granted, _ = convnet_case
    with_prior = run(name, model, granted, bn_stats=1e-1)
    without = run(name, model, granted, bn_stats=0.0)
    assert not torch.equal(with_prior.images, without.images)


@pytest.mark.parametrize("name", ["gi", "gi-z", "gias"])
def test_without_statistics_nothing_changes(name, convnet_case):
    model, _, granted, withheld = convnet_case
    blind = run(name, model, withheld, bn_stats=1e-1)
    reference = run(name, model, granted, bn_stats=0.0)
    assert torch.equal(blind.images, reference.images)
    assert blind.restart_costs == reference.restart_costs


def test_prior_pulls_the_statistics_towards_the_client(convnet_case):
    model, _, granted, _ = convnet_case
    target = prepare_target(model, granted, image_shape=SHAPE, device=torch.device("cpu"))
    distance = {w: float(target.bn_prior(run("gi", model, granted, bn_stats=w,
                                             iterations=30).images, 1.0)) for w in (0.0, 1.0)}
    assert distance[1.0] < distance[0.0]


def test_batched_restarts_equal_the_loop_with_the_prior(convnet_case):
    model, _, granted, _ = convnet_case
    fast = run("gi", model, granted, bn_stats=1e-1, batched=True)
    slow = run("gi", model, granted, bn_stats=1e-1, batched=False)
    torch.testing.assert_close(fast.images, slow.images, rtol=1e-4, atol=1e-4)


def test_statistics_of_another_model_are_refused(convnet_case):
    model, batch, granted, _ = convnet_case
    wider = build_model("convnet", channels=1, image_size=16, width=8, seed=0)
    other = compute_update(wider, batch, mode="train").bn_stats
    with pytest.raises(GradinvError, match="BatchNorm statistics of layer"):
        prepare_target(model, replace(granted, bn_stats=other), image_shape=SHAPE,
                       device=torch.device("cpu"))


def test_the_prior_traces_as_one_graph_with_its_hooks_registered_once(convnet_case, monkeypatch):
    model, _, granted, _ = convnet_case
    target = prepare_target(model, granted, image_shape=SHAPE, device=torch.device("cpu"))
    hooks = [len(m._forward_pre_hooks) for m in target.model.module.modules()]
    # dynamo's trace alone (nothing is compiled): a graph break would fail the fullgraph step
    monkeypatch.setattr(execution, "BACKEND", "eager")

    def cost_fn(v, _fixed):
        distance = target.bn_prior(v["images"], 1.0)
        return distance, distance

    result = optimise_restarts({"images": torch.rand(2, 2, *SHAPE)}, cost_fn, iterations=2, lr=0.1,
                               compile="on", progress=False)
    assert result.execution.mode == "compiled"
    assert [len(m._forward_pre_hooks) for m in target.model.module.modules()] == hooks
