"""Real client models: torch.nn.BatchNorm2d is converted (state kept); what cannot be is refused."""
import pytest
import torch
from torch import nn

from gradinv.fl.client import compute_update
from gradinv.fl.functional import FunctionalModel
from gradinv.models import BatchNorm2d, adapt_model
from gradinv.types import GradinvError, PrivateBatch


def torch_model(norm: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), norm or nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model(torch.randn(8, 1, 8, 8))
    return model


def test_batchnorm_is_converted_with_its_state():
    model = torch_model()
    adapted = adapt_model(model)
    assert not any(type(m) is nn.BatchNorm2d for m in adapted.modules())
    assert sum(isinstance(m, BatchNorm2d) for m in adapted.modules()) == 2
    assert list(adapted.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(adapted.state_dict()[key], value), key
    assert type(model[1]) is nn.BatchNorm2d  # the user's model is untouched
    x = torch.randn(5, 1, 8, 8)
    model.eval(), adapted.eval()
    torch.testing.assert_close(adapted(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_update_of_a_torch_model_matches_autograd(mode):
    model = torch_model()
    images, labels = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    update = compute_update(model, PrivateBatch(images, labels), kind="fedsgd", mode=mode)
    reference = torch_model().train(mode == "train")
    reference.load_state_dict(model.state_dict())
    running = reference[1].running_mean.clone()
    nn.functional.cross_entropy(reference(images), labels).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(update.tensors[name], p.grad, rtol=1e-4, atol=1e-6)
    assert torch.equal(model[1].running_mean, running)  # not updated by the client
    assert set(update.bn_stats) == {"1", "3.1"}


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(4), nn.BatchNorm3d(4),
                                  nn.BatchNorm2d(4, affine=False),
                                  nn.BatchNorm2d(4, track_running_stats=False)])
def test_what_cannot_be_converted_is_one_clear_error(norm):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), norm)
    with pytest.raises(GradinvError, match="cannot attack this model: 1 "):
        FunctionalModel(model, "eval")


def test_group_norm_is_kept_and_vmaps():
    model = torch_model(nn.GroupNorm(2, 4))
    f = FunctionalModel(model, "train")
    assert isinstance(f.module[1], nn.GroupNorm)
    x = torch.randn(3, 2, 1, 8, 8)
    labels = torch.tensor([0, 1])
    losses = torch.vmap(lambda xi: f.loss(f.params, xi, labels))(x)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
