"""Victim models: the initialisation scheme is what the name says, and it changes what leaks."""
import math

import pytest
import torch
from torch import nn

from gradinv.data import private_batch
from gradinv.fl import compute_update
from gradinv.models import INIT_SCHEMES, build_model, default_init_scheme
from gradinv.types import GradinvError


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
def test_default_init_is_kaiming_fan_out(name):
    model = build_model(name, width=16, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2 / fan_out)
        if conv.weight.numel() >= 1000:  # enough draws for a 10 % band
            assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_pytorch_scheme_keeps_layer_defaults():
    model = build_model("resnet18", width=16, seed=0, init_scheme="pytorch")
    conv = model.layers[-1].conv2
    fan_in = conv.in_channels * 9
    # kaiming_uniform with a = sqrt(5): std = 1 / sqrt(3 fan_in), far below sqrt(2 / fan_out)
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)


def test_lenet_keeps_the_dlg_init():
    assert default_init_scheme("lenet") == "dlg-uniform"
    params = torch.cat([p.flatten() for p in build_model("lenet", seed=0).parameters()])
    assert params.min() >= -0.5 and params.max() <= 0.5 and params.std() > 0.25


def test_scheme_changes_the_observed_gradient(default_data):
    batch = private_batch(default_data, 2, size=32, channels=3)
    norms = {}
    for scheme in ("kaiming-fan-out", "pytorch"):
        model = build_model("resnet18", width=8, seed=0, init_scheme=scheme)
        update = compute_update(model, batch)
        norms[scheme] = torch.cat([t.flatten() for t in update.tensors.values()]).norm().item()
    # the fan_out init makes the gradient several times larger (and much harder to invert)
    assert norms["kaiming-fan-out"] > 3 * norms["pytorch"]


def test_same_seed_same_weights_and_unknown_scheme_refused():
    a = build_model("convnet", width=4, seed=3)
    b = build_model("convnet", width=4, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert set(INIT_SCHEMES) == {"kaiming-fan-out", "pytorch", "dlg-uniform"}
    with pytest.raises(GradinvError, match="init scheme"):
        build_model("convnet", init_scheme="xavier")
