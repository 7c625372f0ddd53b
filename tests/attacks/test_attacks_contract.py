"""Every registered attack honours the same contract; new attacks are picked up automatically."""
import pytest
import torch

from gradinv import attacks
from gradinv.data import load_dataset, private_batch
from gradinv.fl import compute_update, observe
from gradinv.types import FedAvgConfig, GradinvError, ThreatModel
from tiny_attacks import FAST, make


@pytest.mark.parametrize("name", sorted(attacks.available()))
@pytest.mark.parametrize("labels_known", [True, False])
def test_attack_contract(name, labels_known, lenet_case):
    model, batch, _ = lenet_case
    obs = observe(compute_update(model, batch), ThreatModel(labels_known=labels_known))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = make(name).reconstruct(model, obs, image_shape=(1, 16, 16), seed=1,
                                                   progress=False)
    assert rec.images.shape == batch.images.shape
    assert torch.isfinite(rec.images).all()
    assert rec.images.min() >= 0 and rec.images.max() <= 1
    assert rec.labels.shape == batch.labels.shape
    assert len(rec.restart_costs) == FAST["restarts"]
    assert rec.matching_cost == min(rec.restart_costs)
    assert len(rec.loss_history) == FAST["iterations"]
    assert rec.attack == name
    # the attack must not touch the victim model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("name", sorted(attacks.available()))
def test_attack_same_seed_same_numbers(name, lenet_case):
    model, _, obs = lenet_case
    runs = [make(name).reconstruct(model, obs, image_shape=(1, 16, 16),
                                                     seed=3, progress=False) for _ in range(2)]
    assert torch.equal(runs[0].images, runs[1].images)
    other = make(name).reconstruct(model, obs, image_shape=(1, 16, 16),
                                                     seed=4, progress=False)
    assert not torch.equal(runs[0].images, other.images)


@pytest.mark.parametrize("name", sorted(attacks.available()))
def test_attack_on_fedavg_update(name, lenet_case, default_data):
    from gradinv.data import private_batch
    model, _, _ = lenet_case
    batch = private_batch(default_data, 2, size=16, channels=1)
    update = compute_update(model, batch, kind="fedavg",
                            fedavg=FedAvgConfig(lr=0.1, local_batch_size=1, epochs=1))
    rec = make(name).reconstruct(model, observe(update, ThreatModel()),
                                                   image_shape=(1, 16, 16), progress=False)
    assert rec.images.shape == batch.images.shape


def test_registry_rejects_unknown_and_duplicates():
    with pytest.raises(GradinvError, match="unknown attack"):
        attacks.create("nope")
    with pytest.raises(GradinvError, match="bad hyper-parameter"):
        attacks.create("dlg", tv=0.1)
    with pytest.raises(ValueError, match="already registered"):
        attacks.register(type(attacks.create("gi")))


def test_gi_start_images():
    with pytest.raises(GradinvError, match="unknown init"):
        attacks.create("gi", init="zeros")
    noise = torch.randn(2, 1, 4, 4)
    assert attacks.gi.INITS["noise"](noise) is noise  # the official init: plain N(0, 1) pixels
    grey = attacks.gi.INITS["grey"](noise)
    assert 0 <= float(grey.min()) <= float(grey.max()) <= 1


def test_gias_checks_its_generator_stage_settings():
    with pytest.raises(GradinvError, match="0 < lr <= "):
        attacks.create("gias", lr=0.0)


@pytest.mark.parametrize("name", sorted(attacks.available()))
def test_every_attack_computes_in_ieee_fp32_whatever_was_set(name, lenet_case):
    """cuDNN rounds convolutions to TF32 by default on recent GPUs; an attack sets IEEE fp32
    for all it computes (label inference, the search, the final rendering), so a GPU audit
    computes what a CPU one does, and restores the user's setting after."""
    model, _, _ = lenet_case
    seen = []

    def record(*_):
        seen.append((torch.backends.cudnn.conv.fp32_precision,
                     torch.backends.cuda.matmul.fp32_precision))

    batch = private_batch(load_dataset("default"), 2, size=16, channels=1)
    observation = observe(compute_update(model, batch), ThreatModel(labels_known=False))
    model.register_forward_pre_hook(record)  # the attack's copy of the model keeps it
    attack = make(name)
    if hasattr(attack, "prior"):
        attack.prior.generator.register_forward_pre_hook(record)
    backends = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    before = [b.fp32_precision for b in backends]
    try:
        for backend in backends:
            backend.fp32_precision = "tf32"
        attack.reconstruct(model, observation, image_shape=(1, 16, 16), progress=False)
        assert [b.fp32_precision for b in backends] == ["tf32", "tf32"]
    finally:
        for backend, value in zip(backends, before):
            backend.fp32_precision = value
    assert seen and set(seen) == {("ieee", "ieee")}
