"""Generators: save/load, prior training with resume, and GIAS's batched per-image copies."""
import json

import numpy as np
import pytest
import torch

from gradinv.attacks import create
from gradinv.cli import main
from gradinv.fl import compute_update, observe
from gradinv.metrics import psnr
from gradinv.models import build_model
from gradinv.priors import (DCGANGenerator, Prior, load_generator, load_prior, project,
                             save_generator)
from gradinv.types import GradinvError, ThreatModel




@pytest.fixture(scope="module")
def train_dir(write_idx, tmp_path_factory, default_data):
    """A 'train split' made of embedded images 250..499, disjoint from the attacked ones (< 250)."""
    root = tmp_path_factory.mktemp("train")
    images = (default_data.images[250:, 0] * 255).round().numpy()
    write_idx(root / "train-images-idx3-ubyte.gz", images)
    write_idx(root / "train-labels-idx1-ubyte.gz", default_data.labels[250:].numpy())
    return root


@pytest.fixture(scope="module")
def tiny_prior(train_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    assert main(["prior", "train", "--dataset", "mnist", "--data-dir", str(train_dir),
                 "--width", "8", "--latent-dim", "16", "--epochs", "30", "--batch-size", "25",
                 "--out", str(out), "--quiet"]) == 0
    return load_prior(str(out / "generator.pt"))


@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3)])
def test_generator_save_load_round_trip(tmp_path, size, channels):
    gen = DCGANGenerator(latent_dim=10, width=8, channels=channels, image_size=size).eval()
    save_generator(gen, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt").eval()
    z = torch.randn(3, 10)
    assert loaded.settings() == gen.settings()
    out = gen(z)
    assert out.shape == (3, channels, size, size)
    torch.testing.assert_close(loaded(z), out, atol=2e-3, rtol=0)  # weights stored as float16


def test_prior_train_runs_and_resumes(train_dir, tmp_path, capsys):
    args = ["prior", "train", "--dataset", "mnist", "--data-dir", str(train_dir), "--width", "8",
            "--latent-dim", "8", "--batch-size", "50", "--max-images", "100", "--out",
            str(tmp_path), "--quiet"]
    assert main([*args, "--epochs", "1"]) == 0
    first = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert first["epoch"] == 1 and (tmp_path / "samples-epoch1.png").exists()
    assert (tmp_path / "settings.json").exists() and (tmp_path / "generator.pt").exists()
    assert main([*args, "--epochs", "2"]) == 0  # more epochs: resumes from epoch 1
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 2
    capsys.readouterr()
    assert main([*args, "--epochs", "2"]) == 0  # the same again: nothing to do, and it says so
    assert "has all 2 epochs: nothing to do" in capsys.readouterr().out
    assert main([*args, "--epochs", "3", "--lr", "1e-3"]) != 0  # other settings: refused
    assert "other settings" in capsys.readouterr().err


def test_prior_train_resume_continues_exactly(train_dir, tmp_path):
    from gradinv.priors.train import PriorTrainingConfig, train_prior
    cfg = dict(dataset="mnist", data_dir=str(train_dir), width=8, latent_dim=8, batch_size=50,
               max_images=100)
    straight = train_prior(PriorTrainingConfig(epochs=2, **cfg), tmp_path / "a", progress=False,
                           log=lambda *_: None)
    # interrupted after one epoch (its checkpoint is all that is left), then resumed
    train_prior(PriorTrainingConfig(epochs=1, **cfg), tmp_path / "b", progress=False,
                log=lambda *_: None)
    resumed = train_prior(PriorTrainingConfig(epochs=2, **cfg), tmp_path / "b", progress=False,
                          log=lambda *_: None)
    a, b = load_generator(straight), load_generator(resumed)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    assert _epoch_log(tmp_path / "a") == _epoch_log(tmp_path / "b")
    assert [line["epoch"] for line in _epoch_log(tmp_path / "a")] == [1, 2]
    assert (tmp_path / "b" / "losses.png").read_bytes().startswith(b"\x89PNG")


def test_prior_train_log_keeps_only_what_the_checkpoint_holds(train_dir, tmp_path):
    """A line torn by a kill, or lines of epochs the checkpoint does not hold (a kill between
    the two writes, a folder whose checkpoint was removed), are not kept or repeated."""
    from gradinv.priors.train import PriorTrainingConfig, train_prior
    cfg = dict(dataset="mnist", data_dir=str(train_dir), width=8, latent_dim=8, batch_size=50,
               max_images=100)
    train_prior(PriorTrainingConfig(epochs=1, **cfg), tmp_path, progress=False,
                log=lambda *_: None)
    with (tmp_path / "epochs.jsonl").open("a") as f:
        f.write('{"epoch": 2, "d_loss": 9.0}\n{"epoch": 3, "d_lo')
    train_prior(PriorTrainingConfig(epochs=2, **cfg), tmp_path, progress=False,
                log=lambda *_: None)
    assert [line["epoch"] for line in _epoch_log(tmp_path)] == [1, 2]
    assert _epoch_log(tmp_path)[1]["d_loss"] != 9.0
    (tmp_path / "checkpoint.pt").unlink()  # starts again from epoch 1: the old log goes
    train_prior(PriorTrainingConfig(epochs=1, **cfg), tmp_path, progress=False,
                log=lambda *_: None)
    assert [line["epoch"] for line in _epoch_log(tmp_path)] == [1]


def _epoch_log(folder) -> list[dict]:
    """epochs.jsonl without the seconds, which differ from run to run."""
    lines = (folder / "epochs.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_prior_must_use_train_split():
    from gradinv.priors.train import PriorTrainingConfig, train_prior
    with pytest.raises(GradinvError, match="train split"):
        train_prior(PriorTrainingConfig(split="test"), "unused")


def test_batched_per_image_copies_equal_the_loop(default_data):
    gen = DCGANGenerator(latent_dim=8, width=8, channels=1, image_size=32)
    prior = Prior(gen, 8)
    model = build_model("lenet", channels=1, image_size=32)
    from gradinv.data import private_batch
    batch = private_batch(default_data, 3, size=32, channels=1)
    obs = observe(compute_update(model, batch), ThreatModel())
    kw = dict(prior=prior, iterations=12, latent_iterations=4, restarts=2, lr=1e-2)
    fast = create("gias", batched=True, **kw).reconstruct(model, obs, image_shape=(1, 32, 32),
                                                         seed=2, progress=False)
    slow = create("gias", batched=False, **kw).reconstruct(model, obs, image_shape=(1, 32, 32),
                                                          seed=2, progress=False)
    np.testing.assert_allclose(fast.restart_costs, slow.restart_costs, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(fast.images, slow.images, rtol=1e-3, atol=1e-3)


def test_gias_beats_gi_on_a_tiny_setup(tiny_prior, default_data):
    from gradinv.data import private_batch
    model = build_model("lenet", channels=1, image_size=32, seed=0)
    batch = private_batch(default_data, 1, size=32, channels=1, offset=0)
    obs = observe(compute_update(model, batch), ThreatModel())
    budget = dict(iterations=200, restarts=2)
    gi = create("gi", **budget).reconstruct(model, obs, image_shape=(1, 32, 32), progress=False)
    gias = create("gias", prior=tiny_prior, **budget).reconstruct(
        model, obs, image_shape=(1, 32, 32), progress=False)
    gi_psnr = psnr(gi.images, batch.images).item()
    gias_psnr = psnr(gias.images, batch.images).item()
    print(f"tiny setup: GI {gi_psnr:.2f} dB, GIAS {gias_psnr:.2f} dB")
    assert gias_psnr > gi_psnr + 1.0, (gias_psnr, gi_psnr)


def test_prior_output_is_adapted_to_the_model():
    prior = Prior(DCGANGenerator(latent_dim=4, width=8, channels=1, image_size=64), 4)
    raw = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 64, 64)
    images = prior.to_model_input(raw, 32, 3)
    assert images.shape == (2, 3, 32, 32)
    assert images[0].max() == 0 and images[1].min() == 1


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(GradinvError, match="unknown prior"):
        load_prior("no-such-prior")
    with pytest.raises(GradinvError, match="cannot build generator"):
        load_prior("no_such_module:make")


def test_user_generator_from_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_gens.py").write_text(
        "from gradinv.priors import DCGANGenerator\n"
        "def make():\n    return DCGANGenerator(latent_dim=6, width=8, channels=3, image_size=32)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib, sys
    sys.modules.pop("my_gens", None)
    weights = tmp_path / "g.pt"
    reference = importlib.import_module("my_gens").make()
    torch.save(reference.state_dict(), weights)
    prior = load_prior("my_gens:make", weights=weights)
    assert prior.latent_dim == 6
    z = torch.randn(2, 6)
    torch.testing.assert_close(prior.generator(z), reference.eval()(z))


def test_faces_prior_loads_into_our_dcgan():
    pytest.importorskip("gan_face_generate")
    prior = load_prior("faces")
    assert isinstance(prior.generator, DCGANGenerator) and prior.latent_dim == 100
    with torch.no_grad():
        images = prior.render(torch.randn(2, 100), (3, 32, 32))
    assert images.shape == (2, 3, 32, 32) and images.std() > 0.05


def test_projection_finds_images_the_generator_can_make(tiny_prior, default_data):
    z = torch.randn(3, tiny_prior.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        in_range = tiny_prior.render(z, (1, 32, 32))
    real = default_data.images[:3]  # never seen by the tiny prior (trained on 250..499)
    fit_in_range = project(tiny_prior, in_range, iterations=300, restarts=4)
    fit_real = project(tiny_prior, torch.nn.functional.interpolate(real, size=32), iterations=300,
                       restarts=4)
    assert fit_in_range.shape == in_range.shape
    in_range_psnr = psnr(fit_in_range, in_range).mean()
    assert in_range_psnr > 30
    assert psnr(fit_real, torch.nn.functional.interpolate(real, size=32)).mean() < in_range_psnr
