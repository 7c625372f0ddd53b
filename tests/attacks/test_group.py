"""Several updates in one batched pass (``attacks.group``): each client gets what it gets alone."""
import pytest
import torch

from gradinv.attacks import create, prepare_target
from gradinv.attacks.group import TargetGroup, stackable_groups
from gradinv.data import private_batch
from gradinv.defenses import create as create_defense
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.priors import DCGANGenerator, Prior
from gradinv.types import FedAvgConfig, GradinvError, ThreatModel

SHAPE = (1, 16, 16)


def _round(default_data, model, clients=3, size=2, threat=ThreatModel(labels_known=False),
           **update):
    """The observed updates of ``clients`` clients of one round (the same broadcast weights)."""
    return [observe(compute_update(model, private_batch(default_data, size, size=16, channels=1,
                                                        offset=5 * c), client_id=c, **update),
                    threat) for c in range(clients)]


def _prior() -> Prior:
    torch.manual_seed(0)
    return Prior(DCGANGenerator(latent_dim=8, width=8, channels=1, image_size=32), 8)


def _same(alone, together, batched):
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(b.images, a.images, rtol=0, atol=1e-5)
        assert b.labels.tolist() == a.labels.tolist()
        assert b.matching_cost == pytest.approx(a.matching_cost, rel=1e-4, abs=1e-7)
        assert b.restart_costs == pytest.approx(a.restart_costs, rel=1e-4, abs=1e-7)
        assert b.loss_history == pytest.approx(a.loss_history, rel=1e-4, abs=1e-7)
        assert b.extras.get("batched_updates") == batched
        assert b.extras.get("latent_costs", []) == pytest.approx(
            a.extras.get("latent_costs", []), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("attack", ["gi", "gi-z", "gias"])
def test_the_clients_of_a_round_in_one_pass_get_what_each_gets_alone(default_data, attack):
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    observations = _round(default_data, model)
    settings = {"iterations": 12, "restarts": 2, "compile": "off",
                **({"prior": _prior()} if attack != "gi" else {})}
    chosen = create(attack, **settings)
    alone = [chosen.reconstruct(model, o, image_shape=SHAPE, seed=3, progress=False)
             for o in observations]
    together = chosen.reconstruct_many(model, observations, image_shape=SHAPE, seed=3,
                                       progress=False)
    _same(alone, together, batched=3)
    # the clients differ, so a mix-up of rows would show
    assert not torch.equal(together[0].images, together[1].images)


def test_known_pruning_is_replayed_against_each_clients_own_update(default_data):
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    observations = _round(default_data, model, threat=ThreatModel(defense_known=True),
                          defenses=[create_defense("prune", rate=0.5)])
    chosen = create("gi", iterations=8, restarts=1, compile="off")
    alone = [chosen.reconstruct(model, o, image_shape=SHAPE, progress=False)
             for o in observations]
    _same(alone, chosen.reconstruct_many(model, observations, image_shape=SHAPE,
                                         progress=False), batched=3)


def test_updates_that_cannot_share_a_pass_are_grouped_apart(default_data):
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    later = build_model("lenet", channels=1, image_size=16, seed=1)  # another round's weights
    fedavg = {"kind": "fedavg", "fedavg": FedAvgConfig(lr=0.1, local_batch_size=1, epochs=1)}
    train_mode = ThreatModel(labels_known=False, model_mode="train")
    observations = [*_round(default_data, model, clients=2), *_round(default_data, later, 1),
                    *_round(default_data, model, clients=1, size=3),
                    *_round(default_data, model, clients=1, **fedavg),
                    *_round(default_data, model, clients=1, threat=train_mode, mode="train")]
    targets = [prepare_target(model, o, image_shape=SHAPE, device=torch.device("cpu"))
               for o in observations]
    assert stackable_groups(targets) == [[0, 1], [2], [3], [4], [5]]
    chosen = create("gi", iterations=6, restarts=1, compile="off")
    alone = [chosen.reconstruct(model, o, image_shape=SHAPE, progress=False)
             for o in observations]
    together = chosen.reconstruct_many(model, observations, image_shape=SHAPE, progress=False)
    _same(alone[:2], together[:2], batched=2)
    _same(alone[2:], together[2:], batched=None)
    with pytest.raises(GradinvError, match="cannot be attacked in one pass"):
        TargetGroup([targets[0], targets[2]])


def test_attacks_that_do_not_batch_updates_run_them_one_after_the_other(default_data):
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    observations = _round(default_data, model, clients=2)
    chosen = create("dlg", iterations=3)
    alone = [chosen.reconstruct(model, o, image_shape=SHAPE, progress=False)
             for o in observations]
    _same(alone, chosen.reconstruct_many(model, observations, image_shape=SHAPE,
                                         progress=False), batched=None)
