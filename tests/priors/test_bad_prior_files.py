"""Generator files, user generator code and prior-training checkpoints handed over by users: every
broken one ends in one GradinvError line naming it."""
import importlib
import sys
import zipfile

import pytest
import torch
from torch import nn

from gradinv.priors import DCGANGenerator, load_generator, load_prior, save_generator
from gradinv.priors.train import PriorTrainingConfig, train_prior
from gradinv.types import GradinvError
from one_line import assert_one_line


def tiny_generator() -> DCGANGenerator:
    return DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32)


# -- corrupt, empty, truncated and non-standard .pt files ------------------------------------

def _write_bad(kind: str, path):
    """A file of the given kind of wrongness at ``path``."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a torch file")
    elif kind == "truncated":
        save_generator(tiny_generator(), path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "a zip, but not one torch.save wrote")
    elif kind == "pickled-module":
        torch.save(tiny_generator(), path)  # the whole nn.Module, not its state dict
    elif kind == "other-architecture":
        other = DCGANGenerator(latent_dim=4, width=8, channels=1, image_size=32)
        torch.save({"kind": "dcgan", "settings": tiny_generator().settings(),
                    "state_dict": other.state_dict()}, path)
    elif kind == "plain-state-dict":
        torch.save(tiny_generator().state_dict(), path)


BAD_KINDS = ["empty", "garbage", "truncated", "zip", "pickled-module", "other-architecture",
             "plain-state-dict"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_generator_file_is_one_clear_line(kind, tmp_path):
    path = tmp_path / f"{kind}.pt"
    _write_bad(kind, path)
    with pytest.raises(GradinvError) as err:
        load_prior(str(path))
    assert_one_line(err, str(path))


def test_messages_say_what_is_wrong(tmp_path):
    cases = {"pickled-module": "pickled Python objects", "other-architecture": "another architecture",
             "empty": "not a readable torch file", "zip": "not a readable torch file"}
    for kind, message in cases.items():
        _write_bad(kind, tmp_path / f"{kind}.pt")
        with pytest.raises(GradinvError, match=message):
            load_generator(tmp_path / f"{kind}.pt")
    with pytest.raises(GradinvError, match="is a folder"):
        load_generator(tmp_path)


def test_saving_is_atomic_and_leaves_no_temporary_file(tmp_path):
    save_generator(tiny_generator(), tmp_path / "g.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]
    assert load_generator(tmp_path / "g.pt").latent_dim == 4


# -- user generators (package.module:factory) -----------------------------------------------

USER_MODULE = '''
import torch
from torch import nn
from gradinv.priors import DCGANGenerator

def good():
    return DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32)

def raises():
    raise ValueError("no GPU here")

def needs_args(size, depth=2):
    return good()

def not_a_module():
    return "a generator"

def flat():
    return nn.Linear(4, 16)

def nan():
    return nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)), nn.Threshold(10, float("nan")))

class WithOwnSize(nn.Module):
    latent_dim = 4
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)))
    def forward(self, z):
        return self.net(z)

not_callable = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "bad_gens.py").write_text(USER_MODULE)
    (tmp_path / "broken_gens.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("bad_gens", "broken_gens"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return tmp_path


@pytest.mark.parametrize("factory,kw,message", [
    ("bad_gens:raises", {}, "raised ValueError: no GPU here"),
    ("bad_gens:needs_args", {}, "needs arguments (size)"),
    ("bad_gens:not_a_module", {}, "returned a str, not a torch.nn.Module"),
    ("bad_gens:not_callable", {}, "no callable 'not_callable'"),
    ("bad_gens:missing", {}, "no callable 'missing'"),
    ("broken_gens:make", {}, "importing broken_gens failed (RuntimeError: broken at import)"),
    ("bad_gens:", {}, "package.module:factory"),
    ("bad_gens:good", {"latent_dim": 7}, "latent size 4, not latent_dim=7"),
    ("bad_gens:flat", {"latent_dim": 4}, "for N=2 it returned shape (2, 16)"),
    ("bad_gens:flat", {"latent_dim": 5}, "fails on latents of shape (2, 5)"),
    ("bad_gens:nan", {"latent_dim": 4}, "non-finite"),
    ("bad_gens:flat", {}, "--latent-dim"),
    ("bad_gens:good", {"latent_dim": 0}, "latent_dim must be an integer with 1 <= latent_dim"),
    ("bad_gens:good", {"output_range": (1.0, 1.0)}, "output_range"),
    ("bad_gens:good", {"output_range": (0.0, float("inf"))}, "output_range"),
    ("bad_gens:good", {"output_range": (1.0, -1.0)}, "low < high"),
])
def test_bad_user_generator_is_one_clear_line(user_module, factory, kw, message):
    with pytest.raises(GradinvError) as err:
        load_prior(factory, **kw)
    assert_one_line(err, message)
    if factory.endswith(("good", "flat", "nan", "raises")):
        assert factory in str(err.value)


def test_user_generator_probed_and_accepted(user_module):
    prior = load_prior("bad_gens:WithOwnSize")
    assert prior.latent_dim == 4 and prior.render(torch.zeros(3, 4), (1, 8, 8)).shape == (3, 1, 8, 8)


@pytest.mark.parametrize("kind", ["pickled-module", "empty", "zip", "other-architecture"])
def test_bad_user_generator_weights(user_module, kind):
    path = user_module / "w.pt"
    if kind == "other-architecture":
        torch.save(nn.Linear(3, 3).state_dict(), path)
    else:
        _write_bad(kind, path)
    with pytest.raises(GradinvError) as err:
        load_prior("bad_gens:good", weights=path)
    assert_one_line(err, str(path))


def test_weights_for_a_prior_that_reads_none_are_refused(tmp_path):
    with pytest.raises(GradinvError, match="only read for a package.module:factory"):
        load_prior("fashion-mnist", weights=tmp_path / "w.pt")


# -- prior training: settings and checkpoints ----------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("batch_size", 0), ("batch_size", 2.5), ("batch_size", True), ("epochs", 0),
    ("epochs", "3"), ("max_images", 0), ("lr", 0.0), ("lr", -1e-3), ("lr", float("nan")),
    ("lr", float("inf")), ("lr", "fast"), ("latent_dim", 0), ("width", -4), ("seed", -1),
    ("seed", 2**63), ("seed", 1.0), ("image_size", 48),
])
def test_prior_training_config_refuses_bad_numbers(field, value):
    with pytest.raises(GradinvError) as err:
        PriorTrainingConfig(**{field: value})
    assert_one_line(err, "32 or 64" if field == "image_size" else field)


def test_prior_training_config_accepts_edges():
    PriorTrainingConfig(batch_size=1, epochs=1, max_images=1, lr=1e-9, latent_dim=1, width=1,
                        seed=2**63 - 1, image_size=64)


@pytest.mark.parametrize("kind", ["empty", "truncated", "pickled-module", "plain-state-dict"])
def test_bad_training_checkpoint_is_one_clear_line(kind, tmp_path):
    _write_bad(kind, tmp_path / "checkpoint.pt")
    config = PriorTrainingConfig(dataset="default", width=4, latent_dim=4, batch_size=10,
                                 max_images=10, epochs=1)
    with pytest.raises(GradinvError) as err:
        train_prior(config, tmp_path, progress=False, log=lambda *_: None)
    assert_one_line(err, str(tmp_path / "checkpoint.pt"))


def test_training_checkpoint_loads_weights_only(tmp_path):
    config = PriorTrainingConfig(dataset="default", width=4, latent_dim=4, batch_size=10,
                                 max_images=10, epochs=1)
    train_prior(config, tmp_path, progress=False, log=lambda *_: None)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["rng"].dtype == torch.uint8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
