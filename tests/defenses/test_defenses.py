"""Every registered defense honours the same contract; each keeps its promise (checked against a
brute-force computation where one exists); an attacker who knows the defenses replays them."""
import inspect
import json
import sys

import numpy as np
import pytest
import torch
from torch.func import grad

from gradinv import attacks, defenses
from gradinv.attacks.base import prepare_target
from gradinv.audit import AuditConfig, evaluate
from gradinv.cli import main
from gradinv.data import private_batch
from gradinv.defenses import ClientContext, DefensePipeline, create, parse_spec
from gradinv.defenses.soteria import feature_sensitivity
from gradinv.fl import compute_update, observe
from gradinv.fl.functional import FunctionalModel
from gradinv.models import build_model
from gradinv.types import DefenseSpec, FedAvgConfig, GradinvError, ThreatModel
from tiny_attacks import FAST, make as make_attack

# Settings that make every defense change a LeNet update; the others keep their defaults.
SETTINGS = {
    "noise": {"sigma": 0.1},
    "dp-noise": {"epsilon": 1.0, "max_norm": 1.0},
    "clip": {"max_norm": 1e-3},
    "prune": {"rate": 0.5},
    "quantize": {"mode": "uniform", "bits": 3},
    "dpsgd": {"noise_multiplier": 0.5, "max_grad_norm": 0.1},
    "soteria": {"rate": 0.5},
}
GIAS_GRID = (0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.98)


def make(name: str, **settings):
    if name == "dp-noise":
        pytest.importorskip("dp_accounting")
    return create(name, **{**SETTINGS.get(name, {}), **settings})


@pytest.fixture
def case(default_data):
    """A LeNet at 16 px grey, a batch of two held-out images, and their undefended update."""
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    batch = private_batch(default_data, 2, size=16, channels=1, offset=0)
    return model, batch, compute_update(model, batch)


def _context(model, batch):
    return ClientContext(FunctionalModel(model, "eval"), batch.images, batch.labels)


def _random_update(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(40, 25, generator=gen), "a.bias": torch.randn(40, generator=gen),
            "b.weight": torch.randn(10, 40, generator=gen)}


@pytest.mark.parametrize("name", sorted(defenses.available()))
def test_defense_contract(name, case):
    model, batch, plain = case
    defended = [compute_update(model, batch, defenses=[make(name)]) for _ in range(2)]
    for k, t in plain.tensors.items():
        assert defended[0].tensors[k].shape == t.shape and defended[0].tensors[k].dtype == t.dtype
        assert torch.equal(defended[0].tensors[k], defended[1].tensors[k])  # same seed, same update
    assert any(not torch.equal(defended[0].tensors[k], t) for k, t in plain.tensors.items())
    assert defended[0].defenses == (DefenseSpec(name, make(name).settings),)
    if make(name).seed is not None:
        other_seed = compute_update(model, batch, defenses=[make(name, seed=1)])
        other_round = compute_update(model, batch, defenses=[make(name)], round=1)
        for other in (other_seed, other_round):
            assert any(not torch.equal(other.tensors[k], t)
                       for k, t in defended[0].tensors.items())


@pytest.mark.parametrize("name", sorted(defenses.available()))
def test_defense_refuses_bad_settings_by_name(name):
    for parameter in inspect.signature(type(make(name)).__init__).parameters:
        if parameter != "self":
            with pytest.raises(GradinvError, match=parameter):
                make(name, **{parameter: "bad"})
    with pytest.raises(GradinvError, match=f"defense {name} takes no setting .strength.; it takes"):
        make(name, strength=1)


@pytest.mark.parametrize("name, settings, parameter", [
    ("noise", {"sigma": -0.1}, "sigma"), ("clip", {"max_norm": 0.0}, "max_norm"),
    ("prune", {"rate": 1.0}, "rate"), ("prune", {"rate": float("nan")}, "rate"),
    ("quantize", {"mode": "uniform"}, "bits"), ("quantize", {"bits": 4}, "bits"),
    ("quantize", {"mode": "uniform", "bits": 0}, "bits"),
    ("dpsgd", {"noise_multiplier": -1.0}, "noise_multiplier"), ("soteria", {"rate": 1}, "rate"),
    ("dp-noise", {"epsilon": 1.0, "max_norm": 1.0, "delta": 1.0}, "delta"),
    ("dp-noise", {"epsilon": 1.0, "max_norm": 1.0, "rounds": 0}, "rounds"),
    ("dp-noise", {"max_norm": 1.0}, "epsilon"),
])
def test_defense_refuses_out_of_range_settings(name, settings, parameter):
    with pytest.raises(GradinvError, match=parameter):
        create(name, **settings)


def test_registry_specs_and_pipeline_order():
    assert set(SETTINGS) == set(defenses.available())
    with pytest.raises(GradinvError, match="unknown defense 'blur'"):
        create("blur")
    with pytest.raises(ValueError, match="already registered"):
        defenses.register(type(create("clip")))
    assert parse_spec("prune") == DefenseSpec("prune", {})
    assert parse_spec(" quantize:mode=uniform, bits=4 ") == DefenseSpec(
        "quantize", {"mode": "uniform", "bits": 4})
    assert parse_spec("noise:sigma=1e-2") == DefenseSpec("noise", {"sigma": 0.01})
    assert str(DefenseSpec("prune", {"rate": 0.9})) == "prune:rate=0.9"
    for bad in ("", ":rate=1", "prune:rate", "prune:=1"):
        with pytest.raises(GradinvError, match="bad defense"):
            parse_spec(bad)
    with pytest.raises(GradinvError, match="dpsgd changes the client's local computation"):
        DefensePipeline.from_specs(["clip", "dpsgd"])
    with pytest.raises(GradinvError, match="list of defenses"):
        DefensePipeline.from_specs("clip")


def test_undefended_update_is_unchanged(case):
    """No defense: exactly today's computation (FedSGD gradient, FedAvg steps)."""
    model, batch, plain = case
    fmodel = FunctionalModel(model, "eval")
    reference = grad(fmodel.loss)(fmodel.params, batch.images, batch.labels)
    for k, t in reference.items():
        assert torch.equal(plain.tensors[k], t)
    cfg = FedAvgConfig(lr=0.1, local_batch_size=1)
    params = dict(fmodel.params)
    for i in range(2):
        step = grad(fmodel.loss)(params, batch.images[i:i + 1], batch.labels[i:i + 1])
        params = {k: params[k] - cfg.lr * step[k] for k in params}
    fedavg = compute_update(model, batch, kind="fedavg", fedavg=cfg, defenses=DefensePipeline([]))
    for k in params:
        assert torch.equal(fedavg.tensors[k], params[k] - fmodel.params[k])
    assert fedavg.defenses == ()


def test_clip_bounds_the_norm():
    update = _random_update()
    clipped = create("clip", max_norm=0.5).apply(update, generator=None, client=None)
    norm = torch.sqrt(sum(t.pow(2).sum() for t in clipped.values()))
    assert norm <= 0.5 * (1 + 1e-6) and norm >= 0.5 * (1 - 1e-6)
    untouched = create("clip", max_norm=1e6).apply(update, generator=None, client=None)
    assert all(torch.equal(untouched[k], t) for k, t in update.items())


@pytest.mark.parametrize("rate", GIAS_GRID)
def test_prune_zeroes_exactly_the_requested_share(rate):
    update = _random_update()
    per_tensor = create("prune", rate=rate).apply(update, generator=None, client=None)
    for k, t in per_tensor.items():
        zeroed = t == 0
        assert int(zeroed.sum()) == round(rate * t.numel())
        if zeroed.any() and not zeroed.all():  # the largest magnitudes are the ones kept
            assert update[k][~zeroed].abs().min() >= update[k][zeroed].abs().max()
    both = create("prune", rate=rate, scope="global").apply(update, generator=None, client=None)
    total = sum(t.numel() for t in update.values())
    assert sum(int((t == 0).sum()) for t in both.values()) == round(rate * total)


def test_noise_has_the_requested_std():
    zeros = {"w": torch.zeros(200_000)}
    defense = create("noise", sigma=0.05)
    noisy = DefensePipeline([defense]).apply(zeros, None, round=3, client_id=2)["w"]
    assert abs(float(noisy.std()) / 0.05 - 1) < 0.02 and abs(float(noisy.mean())) < 1e-3
    again = DefensePipeline([defense]).apply(zeros, None, round=3, client_id=2)["w"]
    other_client = DefensePipeline([defense]).apply(zeros, None, round=3, client_id=1)["w"]
    assert torch.equal(noisy, again) and not torch.equal(noisy, other_client)


def test_dp_noise_matches_the_accountant():
    dp = pytest.importorskip("dp_accounting")
    one = create("dp-noise", epsilon=1.0, delta=1e-5, max_norm=2.0)
    # one release: the analytic Gaussian mechanism (Balle & Wang 2018) of the same library
    assert one.noise_multiplier == pytest.approx(dp.get_sigma_gaussian(1.0, 1e-5), rel=1e-3)
    assert one.std == pytest.approx(2.0 * one.noise_multiplier)
    # several releases: the PLD accountant's own epsilon for the calibrated multiplier
    composed = create("dp-noise", epsilon=4.0, delta=1e-6, max_norm=1.0, rounds=3)
    event = dp.SelfComposedDpEvent(dp.GaussianDpEvent(composed.noise_multiplier), 3)
    epsilon = dp.pld.PLDAccountant().compose(event).get_epsilon(1e-6)
    assert 4.0 - 1e-2 <= epsilon <= 4.0 + 1e-6
    # replacing the client's data doubles the sensitivity, hence the noise
    replace = create("dp-noise", epsilon=1.0, delta=1e-5, max_norm=2.0, relation="replace")
    assert replace.noise_multiplier == pytest.approx(2 * one.noise_multiplier, rel=1e-3)
    update = {"w": torch.full((100_000,), 1.0)}  # norm 316: clipped to 2 before the noise
    noisy = DefensePipeline([one]).apply(update, None)["w"]
    assert abs(float(noisy.std()) / one.std - 1) < 0.02
    assert float(one.replay(update, update)["w"].norm()) == pytest.approx(2.0, rel=1e-4)


def test_dpsgd_epsilon_is_calibrated_by_the_accountant():
    """DP-SGD given epsilon: the PLD accountant's own epsilon for the noise multiplier it
    picked, composed over the local steps, is the target (and one step is the analytic
    Gaussian mechanism's multiplier)."""
    dp = pytest.importorskip("dp_accounting")
    one = create("dpsgd", epsilon=2.0, delta=1e-5)
    assert one.noise_multiplier == pytest.approx(dp.get_sigma_gaussian(2.0, 1e-5), rel=1e-3)
    steps = create("dpsgd", epsilon=8.0, delta=1e-5, steps=5)
    event = dp.SelfComposedDpEvent(dp.GaussianDpEvent(steps.noise_multiplier), 5)
    assert 8.0 - 1e-2 <= dp.pld.PLDAccountant().compose(event).get_epsilon(1e-5) <= 8.0 + 1e-6
    assert create("dpsgd").noise_multiplier == 1.0
    assert create("dpsgd", epsilon=1e6).noise_multiplier < 1e-3  # instant for one release
    with pytest.raises(GradinvError, match="not both"):
        create("dpsgd", epsilon=1.0, noise_multiplier=1.0)
    with pytest.raises(GradinvError, match="delta"):
        create("dpsgd", epsilon=1.0, delta=1.0)


def test_dpsgd_epsilon_must_cover_the_clients_local_epochs(case):
    """An example is in one FedAvg step per local epoch: epsilon calibrated for fewer releases
    than that would promise more privacy than the client gets."""
    pytest.importorskip("dp_accounting")
    model, batch, _ = case
    fedavg = FedAvgConfig(local_batch_size=1, epochs=2)
    with pytest.raises(GradinvError, match="give steps=2"):
        compute_update(model, batch, kind="fedavg", fedavg=fedavg,
                       defenses=[create("dpsgd", epsilon=2.0)])
    compute_update(model, batch, kind="fedavg", fedavg=fedavg,
                   defenses=[create("dpsgd", epsilon=2.0, steps=2)])
    compute_update(model, batch, kind="fedavg", fedavg=fedavg,
                   defenses=[create("dpsgd", noise_multiplier=1.0)])  # no promise to check


def test_runs_of_different_seeds_draw_different_noise(case):
    """The run's seed is mixed into a random defense's draws (a sweep's seeds, federations of
    different seeds); seed 0 draws what it drew before the run seed existed."""
    model, batch, _ = case
    noise = [create("noise", sigma=0.1)]
    draw = {s: compute_update(model, batch, defenses=noise, seed=s).tensors for s in (0, 1)}
    again = compute_update(model, batch, defenses=noise, seed=1).tensors
    assert all(torch.equal(again[k], draw[1][k]) for k in draw[1])
    assert not any(torch.equal(draw[0][k], draw[1][k]) for k in draw[0])
    old = np.random.SeedSequence([0, 0, 0, 0]).generate_state(1, np.uint64)
    plain = compute_update(model, batch).tensors
    first = next(iter(plain))
    expected = plain[first] + 0.1 * torch.randn(plain[first].shape,
                                                generator=torch.Generator().manual_seed(int(old[0])))
    assert torch.equal(draw[0][first], expected)


def test_a_setting_given_twice_is_refused():
    with pytest.raises(GradinvError, match="epsilon is given twice"):
        parse_spec("dpsgd:epsilon=2,delta=1e-5,epsilon=3")


def test_dp_noise_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(GradinvError, match=r"gradinv\[dp\]"):
        create("dp-noise", epsilon=3.21, max_norm=1.0)


def test_quantize_sign_and_uniform_levels():
    update = {**_random_update(), "zero": torch.tensor([0.0, 1.0, -2.0])}
    signed = create("quantize").apply(update, generator=None, client=None)
    for k, t in signed.items():
        scale = update[k].abs().mean()
        assert set((t / scale).round().unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert torch.allclose(t, update[k].sign() * scale)
    levels = create("quantize", mode="uniform", bits=2).apply(update, generator=None, client=None)
    for k, t in levels.items():
        step = (update[k].max() - update[k].min()) / 3
        assert len(t.unique()) <= 4 and (t - update[k]).abs().max() <= step / 2 + 1e-6


def test_dpsgd_is_the_mean_of_clipped_per_example_gradients(case, default_data):
    """With no noise and a tiny clipping norm, DP-SGD's update equals a brute-force loop over
    examples: each gradient clipped to C (Opacus' factor C / (|g| + 1e-6)), then averaged."""
    model, _, _ = case
    batch = private_batch(default_data, 3, size=16, channels=1, offset=5)
    clip = 1e-3
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in zip(batch.images, batch.labels):
        loss = torch.nn.functional.cross_entropy(model(x[None]), y[None])
        grads = dict(zip(expected, torch.autograd.grad(loss, list(model.parameters()))))
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
        assert norm > clip  # the clipping is active
        for n, g in grads.items():
            expected[n] += g * min(1.0, clip / (float(norm) + 1e-6)) / len(batch.labels)
    update = compute_update(model, batch, defenses=[create("dpsgd", noise_multiplier=0.0,
                                                           max_grad_norm=clip)])
    for n, t in expected.items():
        assert torch.allclose(update.tensors[n], t, rtol=1e-4, atol=1e-10)
    # the noise: std noise_multiplier * C on the sum of the clipped gradients, i.e. / n here
    noisy = compute_update(model, batch, defenses=[create("dpsgd", noise_multiplier=2.0,
                                                          max_grad_norm=clip)])
    noise = torch.cat([(noisy.tensors[n] - update.tensors[n]).flatten() for n in expected]) * 3
    assert abs(float(noise.std()) / (2.0 * clip) - 1) < 0.03


def test_dpsgd_runs_in_every_fedavg_step(case):
    model, batch, _ = case
    cfg = FedAvgConfig(lr=0.5, local_batch_size=1)
    dpsgd = create("dpsgd", noise_multiplier=0.0, max_grad_norm=1e-3)
    update = compute_update(model, batch, kind="fedavg", fedavg=cfg, defenses=[dpsgd])
    fmodel = FunctionalModel(model, "eval")
    params = dict(fmodel.params)
    for i in range(2):  # one example per step: its gradient clipped to norm 1e-3
        step = grad(fmodel.loss)(params, batch.images[i:i + 1], batch.labels[i:i + 1])
        norm = torch.sqrt(sum(g.pow(2).sum() for g in step.values()))
        params = {k: params[k] - cfg.lr * step[k] * 1e-3 / (norm + 1e-6) for k in params}
    for k in params:
        assert torch.allclose(update.tensors[k], params[k] - fmodel.params[k], atol=1e-9)


def test_dpsgd_refuses_train_mode_batch_norm(default_data):
    model = build_model("convnet", channels=1, image_size=16, width=4, seed=0)
    batch = private_batch(default_data, 2, size=16, channels=1)
    with pytest.raises(GradinvError, match="BatchNorm in train mode"):
        compute_update(model, batch, mode="train", defenses=[create("dpsgd")])


def test_soteria_prunes_the_features_the_official_loop_ranks_lowest(case):
    model, batch, plain = case
    # the official code: one backward per representation feature f of the batch's column f
    images = batch.images.clone().requires_grad_(True)
    seen = []
    hook = model.classifier.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    model(images)
    hook.remove()
    r = seen[0]
    reference = torch.zeros(r.shape[1])
    for f in range(r.shape[1]):
        (d,) = torch.autograd.grad(r[:, f].sum(), images, retain_graph=True)
        reference[f] = (d.flatten(1).norm(dim=1) / (r[:, f].detach().abs() + 1e-10)).sum()
    score = feature_sensitivity(_context(model, batch), "classifier")
    assert torch.allclose(score, reference, rtol=1e-4)
    defended = create("soteria", rate=0.25).apply(plain.tensors, generator=None,
                                                  client=_context(model, batch))
    zero_columns = (defended["classifier.weight"] == 0).all(0)
    assert int(zero_columns.sum()) == round(0.25 * r.shape[1])
    assert score[zero_columns].max() <= score[~zero_columns].min()
    assert all(torch.equal(defended[k], t) for k, t in plain.tensors.items()
               if k != "classifier.weight")


def test_observation_carries_the_defenses_only_when_known(case):
    model, batch, _ = case
    update = compute_update(model, batch, defenses=[create("prune"), create("noise", seed=7)])
    assert update.defenses[1].settings["seed"] == 7
    assert observe(update, ThreatModel()).defenses is None
    known = observe(update, ThreatModel(defense_known=True)).defenses
    assert known == (DefenseSpec("prune", {"rate": 0.95, "scope": "tensor"}),
                     DefenseSpec("noise", {"sigma": 0.01}))  # the client's seed stays private
    with pytest.raises(GradinvError, match="defense_known"):
        ThreatModel(defense_known="yes")


def _truth_cost(model, batch, update, known, cost):
    observation = observe(update, ThreatModel(defense_known=known))
    target = prepare_target(model, observation, image_shape=(1, 16, 16),
                            device=torch.device("cpu"))
    return float(target.matching_cost(cost, None)(batch.images, batch.labels))


@pytest.mark.parametrize("spec, cost, unknown", [
    ("prune:rate=0.9", "cosine", 0.1), ("soteria:rate=0.8", "cosine", 0.1),
    ("clip:max_norm=1e-3", "l2", 10.0), ("quantize", "cosine", 0.1),
    ("quantize:mode=uniform,bits=2", "cosine", 0.1),
    # two images of similar gradient norm: clipping them reweights their mean only a little
    ("dpsgd:noise_multiplier=0,max_grad_norm=1e-3", "cosine", 3e-5),
])
def test_knowing_attacker_matches_the_true_images_exactly(case, spec, cost, unknown):
    """The true images' simulated update, with the defense replayed (pruning: compared only
    where the observed update kept entries), matches the observed one: cost 0 when known,
    above 0 when not."""
    model, batch, _ = case
    update = compute_update(model, batch, defenses=DefensePipeline.from_specs([spec]))
    # (cosine: up to the 1e-12 guard of its denominator, relative to norms of 1e-3 with dpsgd)
    assert abs(_truth_cost(model, batch, update, True, cost)) <= (1e-5 if cost == "cosine" else 0)
    assert _truth_cost(model, batch, update, False, cost) > unknown


def test_knowing_the_pruning_recovers_the_image(default_data):
    """GI against 90 % pruning on LeNet: 10.5-13.0 dB with the defense known, 6.5-6.8 dB
    without (measured at 100 iterations on three held-out images; 17.7-28.9 dB vs 6.5-6.7 dB
    at 300 iterations and 2 restarts)."""
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    batch = private_batch(default_data, 1, size=16, channels=1, offset=0)
    update = compute_update(model, batch, defenses=[create("prune", rate=0.9)])
    psnr = {}
    for known in (False, True):
        observation = observe(update, ThreatModel(defense_known=known))
        rec = attacks.create("gi", iterations=100, restarts=1).reconstruct(
            model, observation, image_shape=(1, 16, 16), progress=False)
        psnr[known] = evaluate(rec, batch.images, batch.labels, data_channels=1,
                               num_classes=10).mean_psnr
    assert psnr[True] > psnr[False] + 4


@pytest.mark.parametrize("name, kind", [(name, "fedsgd") for name in sorted(attacks.available())]
                         + [("gi", "fedavg")])
def test_every_attack_replays_known_defenses(name, kind, case):
    """DP-SGD's clipping (vmap over examples inside the attack's vmap over restarts), pruning
    masks and straight-through quantisation inside every attack's optimisation."""
    model, batch, _ = case
    pipeline = DefensePipeline.from_specs(["dpsgd:noise_multiplier=0.1", "prune:rate=0.5",
                                           "quantize:mode=uniform,bits=4"])
    update = compute_update(model, batch, kind=kind, defenses=pipeline,
                            fedavg=FedAvgConfig(lr=0.1, local_batch_size=1))
    rec = make_attack(name).reconstruct(model, observe(update, ThreatModel(defense_known=True)),
                                        image_shape=(1, 16, 16), progress=False)
    assert rec.images.shape == batch.images.shape and torch.isfinite(rec.images).all()
    assert len(rec.loss_history) == FAST["iterations"]


def test_audit_config_records_effective_defenses(tmp_path, capsys):
    config = AuditConfig(defenses=("prune:rate=0.9", ("clip", {"max_norm": 2.0})))
    assert config.defenses == (DefenseSpec("prune", {"rate": 0.9, "scope": "tensor"}),
                               DefenseSpec("clip", {"max_norm": 2.0}))
    with pytest.raises(GradinvError, match="rate"):
        AuditConfig(defenses=("prune:rate=2",))
    code = main(["attack", "--attack", "gi", "--model", "lenet", "--image-size", "16",
                 "--iterations", "2", "--restarts", "1", "--device", "cpu", "--quiet",
                 "--defense", "prune:rate=0.9", "--defense", "noise:sigma=0.01",
                 "--defense-known", "--out", str(tmp_path)])
    assert code == 0
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "config.json").read_text())
    assert saved["threat"]["defense_known"] is True
    assert saved["defenses"] == [{"name": "prune", "settings": {"rate": 0.9, "scope": "tensor"}},
                                 {"name": "noise", "settings": {"sigma": 0.01, "seed": 0}}]
    assert AuditConfig(defenses=saved["defenses"]).defenses == (  # the record reads back
        DefenseSpec("prune", {"rate": 0.9, "scope": "tensor"}),
        DefenseSpec("noise", {"sigma": 0.01, "seed": 0}))
    assert "defenses_derived" not in saved  # nothing derived from these settings
    capsys.readouterr()
    assert main(["attack", "--defense", "prune:rate=x", "--out", str(tmp_path)]) == 2
    assert "rate must be a finite number" in capsys.readouterr().err
    assert main(["attack", "--record", str(tmp_path), "--round", "0", "--client", "0",
                 "--defense", "clip"]) == 2
    assert "--defense" in capsys.readouterr().err


def test_the_noise_an_epsilon_calls_for_is_recorded(tmp_path):
    dp = pytest.importorskip("dp_accounting")
    assert main(["attack", "--attack", "gi", "--model", "lenet", "--image-size", "16",
                 "--iterations", "2", "--restarts", "1", "--device", "cpu", "--quiet",
                 "--defense", "dpsgd:epsilon=2,max_grad_norm=0.5", "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    (derived,) = json.loads((folder / "config.json").read_text())["defenses_derived"]
    assert derived["name"] == "dpsgd"
    assert derived["noise_multiplier"] == pytest.approx(dp.get_sigma_gaussian(2.0, 1e-5))
    assert derived["noise_std"] == pytest.approx(0.5 * derived["noise_multiplier"])
