"""No layer, cost, defense or prior of any attack drops to vmap's per-sample fallback loop
(slow, and silent): every attack's step runs with the fallback turned into an error."""
import pytest
import torch

from gradinv import attacks
from gradinv.data import private_batch
from gradinv.defenses import DefensePipeline
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.priors import DCGANGenerator, Prior
from gradinv.types import FedAvgConfig, ThreatModel

# Every way the simulated client can differ: BatchNorm in train mode with the BN prior, FedAvg's
# unrolled steps, labels inferred, and the defenses an attacker replays (DP-SGD's per-example
# clipping is a vmap inside the restarts' vmap).
CASES = {
    "train-bn-prior": dict(mode="train", threat=dict(model_mode="train", bn_stats_known=True)),
    "fedavg-labels-unknown": dict(kind="fedavg", threat=dict(labels_known=False)),
    "defenses-known": dict(defenses=["dpsgd:noise_multiplier=0.1", "prune:rate=0.5",
                                     "clip:max_norm=1", "quantize:mode=uniform,bits=4"],
                           threat=dict(defense_known=True)),
}


@pytest.fixture
def no_vmap_fallback():
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(True)


@pytest.fixture(scope="module")
def convnet(default_data):
    model = build_model("convnet", channels=1, image_size=16, width=4, seed=0)
    return model, private_batch(default_data, 2, size=16, channels=1)


# DLG and iDLG optimise one restart at a time without vmap: only a replayed defense vmaps there.
RUNS = [(name, case) for name in sorted(attacks.available()) for case in sorted(CASES)
        if "dlg" not in name or case == "defenses-known"]


@pytest.mark.parametrize("name, case", RUNS)
def test_every_attack_runs_without_vmap_fallback(name, case, convnet, no_vmap_fallback):
    model, batch = convnet
    spec = CASES[case]
    update = compute_update(model, batch, kind=spec.get("kind", "fedsgd"),
                            mode=spec.get("mode", "eval"),
                            fedavg=FedAvgConfig(lr=0.1, local_batch_size=1),
                            defenses=DefensePipeline.from_specs(spec.get("defenses", [])))
    observation = observe(update, ThreatModel(**spec["threat"]))
    takes = attacks.accepted_hyperparameters(name)
    # (one L-BFGS iteration of DLG is up to 20 evaluations of its step)
    kw = {"iterations": 1 if "dlg" in name else 2, "restarts": 2,
          **({"bn_stats": 0.1} if "bn_stats" in takes else {})}
    if "prior" in takes:
        kw["prior"] = Prior(DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32), 4)
    # two clients of a round, matched in one pass by the attacks that batch updates (their
    # labels and updates are then per-row inputs of the vmapped step)
    found = attacks.create(name, **kw).reconstruct_many(model, [observation, observation],
                                                        image_shape=(1, 16, 16), progress=False)
    assert all(torch.isfinite(rec.images).all() for rec in found)
