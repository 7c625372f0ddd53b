"""Image priors: a generator plus what is needed to turn its output into model input.

Sources: the generator shipped with gradinv (trained on the Fashion-MNIST train split), the
DigiFace-1M face DCGAN of the optional ``gan-face-generate`` package, a file written by
``gradinv prior train``, or any user module given as ``package.module:factory`` plus weights.
"""
from __future__ import annotations

import importlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..data import adapt_channels
from ..types import GradinvError
from .dcgan import DCGANGenerator

SHIPPED = {"fashion-mnist": "prior_fashion_mnist_dcgan32.pt"}


@dataclass
class Prior:
    """A frozen generator z -> images, with its latent size and output value range."""

    generator: nn.Module
    latent_dim: int
    output_range: tuple[float, float] = (-1.0, 1.0)
    name: str = "generator"

    def __post_init__(self) -> None:
        self.generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)

    def to_model_input(self, raw: torch.Tensor, size: int, channels: int) -> torch.Tensor:
        """Map generator output to [0, 1], resize by area averaging, adapt the channel count."""
        low, high = self.output_range
        images = ((raw - low) / (high - low)).clamp(0, 1)
        if images.shape[-2:] != (size, size):
            lead = images.shape[:-3]
            images = F.interpolate(images.reshape(-1, *images.shape[-3:]), size=(size, size),
                                   mode="area").reshape(*lead, images.shape[-3], size, size)
        return adapt_channels(images, channels)

    def render(self, z: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
        """G(z) as model input, for latent codes of shape (..., latent_dim)."""
        raw = self.generator(z.reshape(-1, z.shape[-1]))
        images = self.to_model_input(raw, image_shape[-1], image_shape[0])
        return images.reshape(*z.shape[:-1], *image_shape)

    def to(self, device: torch.device) -> "Prior":
        self.generator.to(device)
        return self


def save_generator(gen: DCGANGenerator, path: str | Path, *, extra: dict | None = None) -> None:
    """Store settings and float16 weights (half the size; the prior is a prior, not a model)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in gen.state_dict().items()}
    torch.save({"kind": "dcgan", "settings": gen.settings(), "state_dict": state,
                "extra": extra or {}}, path)


def load_generator(path: str | Path) -> DCGANGenerator:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        gen = DCGANGenerator(**blob["settings"])
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in blob["state_dict"].items()})
    except (OSError, KeyError, RuntimeError, TypeError) as err:
        raise GradinvError(f"cannot load generator {path}: {err}") from None
    return gen


def load_faces_prior() -> Prior:
    """The DigiFace-1M DCGAN (3x64x64) of ``gan-face-generate``, loaded into our own class.

    Install with ``pip install --no-deps gan-face-generate`` (its declared dependencies,
    torchvision and wandb, are not needed: only its weights file is read).
    """
    try:
        weights = importlib.resources.files("gan_face_generate") / "weights.tar"
    except ModuleNotFoundError:
        raise GradinvError("the faces prior needs 'pip install --no-deps gan-face-generate'") from None
    with importlib.resources.as_file(weights) as path:
        state = torch.load(path, map_location="cpu", weights_only=False)["netG_state_dict"]
    gen = DCGANGenerator(latent_dim=100, width=64, channels=3, image_size=64)
    gen.load_state_dict(state)
    return Prior(gen, 100, (-1.0, 1.0), "digiface-dcgan64")


def load_user_prior(factory: str, weights: str | Path | None, *, latent_dim: int | None,
                    output_range: tuple[float, float] = (-1.0, 1.0)) -> Prior:
    """``package.module:callable`` returning an nn.Module that maps (N, latent_dim) to images."""
    module_name, _, attr = factory.partition(":")
    try:
        gen = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError, ValueError) as err:
        raise GradinvError(f"cannot build generator from {factory!r}: {err}") from None
    if not isinstance(gen, nn.Module):
        raise GradinvError(f"{factory!r} did not return a torch.nn.Module")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            gen.load_state_dict(state.get("state_dict", state))
        except (OSError, RuntimeError, AttributeError) as err:
            raise GradinvError(f"cannot load weights {weights}: {err}") from None
    dim = latent_dim or getattr(gen, "latent_dim", None)
    if dim is None:
        raise GradinvError("give the generator's latent size (--latent-dim)")
    return Prior(gen, int(dim), output_range, factory)


def load_prior(source: str, *, weights: str | Path | None = None, latent_dim: int | None = None,
               output_range: tuple[float, float] = (-1.0, 1.0)) -> Prior:
    """'fashion-mnist' (shipped), 'faces', a path written by ``gradinv prior train``, or
    'package.module:factory' (with ``weights``)."""
    if source in SHIPPED:
        ref = importlib.resources.files("gradinv") / "assets" / SHIPPED[source]
        with importlib.resources.as_file(ref) as path:
            if not path.exists():
                raise GradinvError(f"the shipped {source} prior is missing from this install")
            gen = load_generator(path)
        return Prior(gen, gen.latent_dim, (-1.0, 1.0), source)
    if source == "faces":
        return load_faces_prior()
    if ":" in source:
        return load_user_prior(source, weights, latent_dim=latent_dim, output_range=output_range)
    if Path(source).exists():
        gen = load_generator(source)
        return Prior(gen, gen.latent_dim, (-1.0, 1.0), Path(source).stem)
    raise GradinvError(f"unknown prior {source!r}: use fashion-mnist, faces, a generator file "
                       "or package.module:factory")
