"""GIML: the meta step moves G towards the adapted copy; runs resume exactly; the result is a prior."""
import json

import pytest
import torch

from gradinv import attacks
from gradinv.data import private_batch
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.priors import load_prior
from gradinv.attacks import giml
from gradinv.attacks.giml import (GIMLConfig, adapt_to_observations, learn_prior, mean_copy,
                                  meta_step, untrained_generator)
from gradinv.priors import Prior
from gradinv.types import GradinvError, ThreatModel

TINY = dict(width=8, latent_dim=16, latent_iterations=4, adapt_iterations=4, sample_every=2,
            checkpoint_every=2)


@pytest.fixture
def observed(default_data):
    """Four single-image updates of a LeNet at 16 px, from four 'rounds' of the same model."""
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    obs = [observe(compute_update(model, private_batch(default_data, 1, size=16, channels=1,
                                                       offset=7 * i), round=i), ThreatModel())
           for i in range(4)]
    return model, obs


def test_meta_step_moves_g_towards_the_adapted_copy():
    gen = untrained_generator(GIMLConfig(width=8, latent_dim=16), channels=1)
    start = {k: v.detach().clone() for k, v in gen.named_parameters()}
    noise = torch.Generator().manual_seed(0)
    adapted = {k: v + 0.1 * torch.randn(v.shape, generator=noise) for k, v in start.items()}
    optimiser = torch.optim.Adam(gen.parameters(), lr=1e-2)
    before, after = meta_step(gen, adapted, optimiser)
    assert after < 0.9 * before
    moved = sum((p.detach() - start[k]).abs().sum() for k, p in gen.named_parameters())
    assert moved > 0
    # every coordinate stepped in the direction of its adapted value
    for k, p in gen.named_parameters():
        assert torch.all((p.detach() - start[k]).sign() == (adapted[k] - start[k]).sign())


def test_tiny_giml_run_gives_a_prior_gias_can_use(observed, tmp_path):
    model, obs = observed
    path = learn_prior(model, obs, (1, 16, 16), GIMLConfig(**TINY), tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.glob("samples-step*.png")) == [
        "samples-step00002.png", "samples-step00004.png"]
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "costs.png").read_bytes().startswith(b"\x89PNG")  # the costs' curves
    prior = load_prior(str(path))
    rec = attacks.create("gias", prior=prior, iterations=4, latent_iterations=2, restarts=1
                         ).reconstruct(model, obs[0], image_shape=(1, 16, 16), progress=False)
    assert rec.images.shape == (1, 1, 16, 16) and torch.isfinite(rec.images).all()


def test_a_meta_batch_moves_g_towards_the_mean_of_its_adapted_copies(observed, tmp_path):
    """Two updates per meta step: the step is the plain meta step towards the mean of the
    copies adapted to each; updates of one round are adapted in one batched pass, and each
    gets the copy it gets alone."""
    model, obs = observed
    config = GIMLConfig(**{**TINY, "meta_batch": 2, "steps": 1})
    path = learn_prior(model, obs, (1, 16, 16), config, tmp_path / "run", progress=False)
    learned = torch.load(path, weights_only=True)["state_dict"]

    gen = untrained_generator(config, channels=1)
    optimiser = torch.optim.Adam(gen.parameters(), lr=config.meta_lr)
    prior = Prior(gen, config.latent_dim, (-1.0, 1.0), "giml")
    cpu = torch.device("cpu")
    copies = [c for c, _, _ in adapt_to_observations(prior, model, obs[:2], (1, 16, 16), config,
                                                      seeds=[0, 1], device=cpu, together=False)]
    batched = [c for c, _, _ in adapt_to_observations(prior, model, obs[:2], (1, 16, 16), config,
                                                      seeds=[0, 1], device=cpu, together=True)]
    for together, own in zip(batched, copies):
        for k in own:
            torch.testing.assert_close(together[k], own[k], rtol=1e-4, atol=1e-6)
    meta_step(gen, mean_copy(copies), optimiser)
    # generator.pt keeps float16 weights
    assert all(torch.equal(learned[k], v.half() if v.is_floating_point() else v)
               for k, v in gen.state_dict().items())
    assert not torch.equal(mean_copy(copies)["main.0.weight"], copies[0]["main.0.weight"])
    (line,) = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert json.loads(line)["updates"] == [[0, obs[0].client_id], [1, obs[1].client_id]]


def test_one_pass_takes_a_meta_step_per_meta_batch(observed, tmp_path):
    model, obs = observed
    learn_prior(model, obs[:3], (1, 16, 16), GIMLConfig(**{**TINY, "meta_batch": 2}), tmp_path,
                progress=False)
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    # three updates in batches of two: the second step wraps around to the first update
    assert [[r for r, _ in line["updates"]] for line in lines] == [[0, 1], [2, 0]]


@pytest.mark.parametrize("meta_batch", [1, 2])
def test_interrupted_and_resumed_equals_uninterrupted(observed, tmp_path, monkeypatch,
                                                      meta_batch):
    model, obs = observed
    config = GIMLConfig(**TINY, meta_batch=meta_batch, steps=4)
    whole = learn_prior(model, obs, (1, 16, 16), config, tmp_path / "whole", progress=False)

    real = giml.adapt_to_observations
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint at step 2, during step 3
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(giml, "adapt_to_observations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        learn_prior(model, obs, (1, 16, 16), config, tmp_path / "split", progress=False)
    monkeypatch.setattr(giml, "adapt_to_observations", real)
    resumed = learn_prior(model, obs, (1, 16, 16), config, tmp_path / "split", progress=False,
                          log=lambda _: None)
    a = torch.load(whole, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    def steps(folder):
        lines = (tmp_path / folder / "steps.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
    assert steps("whole") == steps("split") and len(steps("whole")) == 4


def test_a_meta_batch_beyond_the_updates_is_refused(observed, tmp_path):
    model, obs = observed
    with pytest.raises(GradinvError, match="meta-batch of 5 updates is more than the 4"):
        learn_prior(model, obs, (1, 16, 16), GIMLConfig(**TINY, meta_batch=5), tmp_path,
                    progress=False)
    assert not tmp_path.joinpath("settings.json").exists()


def test_resuming_with_fewer_steps_than_taken_does_nothing_and_says_so(observed, tmp_path):
    model, obs = observed
    learn_prior(model, obs, (1, 16, 16), GIMLConfig(**TINY), tmp_path, progress=False)
    settings = (tmp_path / "settings.json").read_text()
    said = []
    learn_prior(model, obs, (1, 16, 16), GIMLConfig(**TINY, steps=2), tmp_path, progress=False,
                log=said.append)
    assert "nothing to do" in said[-1] and (tmp_path / "settings.json").read_text() == settings
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 4


def test_resume_refuses_other_settings(observed, tmp_path):
    model, obs = observed
    learn_prior(model, obs[:2], (1, 16, 16), GIMLConfig(**TINY), tmp_path, progress=False)
    with pytest.raises(GradinvError, match="other GIML settings"):
        learn_prior(model, obs[:2], (1, 16, 16), GIMLConfig(**{**TINY, "adapt_lr": 0.5}),
                    tmp_path, progress=False)


@pytest.mark.parametrize("bad", [{"meta_lr": float("nan")}, {"adapt_iterations": 0},
                                 {"tv": -1.0}, {"image_size": 48}, {"steps": 0},
                                 {"meta_batch": 0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(GradinvError, match="GIML"):
        GIMLConfig(**bad)


def test_cli_learns_from_a_record_without_reading_private_batches(tmp_path, capsys):
    """fl simulate -> prior learn -> attack with the learned prior; deleting the record's
    private part does not change what GIML learns (it only reads the observed updates)."""
    import shutil

    from gradinv.cli import main

    record = tmp_path / "record"
    assert main(["fl", "simulate", "--record", str(record), "--model", "lenet", "--image-size",
                 "16", "--rounds", "2", "--clients", "4", "--clients-per-round", "2",
                 "--batch-size", "2", "--quiet"]) == 0
    learn = ["prior", "learn", "--record", str(record), "--width", "8", "--latent-dim", "16",
             "--latent-iterations", "3", "--adapt-iterations", "3", "--steps", "3", "--quiet"]
    assert main(learn + ["--out", str(tmp_path / "a")]) == 0
    shutil.rmtree(record / "private")
    assert main(learn + ["--out", str(tmp_path / "b")]) == 0
    a = torch.load(tmp_path / "a" / "generator.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "generator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["attack", "--record", str(record), "--round", "1", "--client",
                 str(json.loads((record / "manifest.jsonl").read_text().splitlines()[-2])
                     ["client_id"]),
                 "--attack", "gias", "--prior", str(tmp_path / "a" / "generator.pt"),
                 "--iterations", "4", "--restarts", "1", "--out", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    assert "no ground truth" in capsys.readouterr().out  # the private part was removed
