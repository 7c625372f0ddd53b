"""Image priors: a generator plus what is needed to turn its output into model input.

Sources: the generator shipped with gradinv (trained on the Fashion-MNIST train split), the
DigiFace-1M face DCGAN of the optional ``gan-face-generate`` package, a file written by
``gradinv prior train``, or any user module given as ``package.module:factory`` plus weights.
"""
from __future__ import annotations

import importlib.resources
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import MAX_SIZE, GradinvError, check_int, one_line
from ..data import adapt_channels
from ..files import load_torch_file, load_weights, save_torch_file
from ..user_code import build_module
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
        check_int("latent_dim", self.latent_dim, low=1, high=MAX_SIZE,
                  where=f"prior {self.name!r}")
        self.output_range = _checked_range(self.output_range, self.name)
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


def _checked_range(output_range: object, name: str) -> tuple[float, float]:
    """(low, high) with finite low < high: anything else would divide by zero or flip images."""
    try:
        low, high = output_range  # type: ignore[misc]
        valid = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                    for v in (low, high)) and low < high
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise GradinvError(f"output_range of prior {name!r} must be two finite numbers low < high, "
                           f"not {output_range!r}")
    return float(low), float(high)


def save_generator(gen: DCGANGenerator, path: str | Path, *, extra: dict | None = None) -> None:
    """Store settings and float16 weights (half the size; the prior is a prior, not a model)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in gen.state_dict().items()}
    save_torch_file({"kind": "dcgan", "settings": gen.settings(), "state_dict": state,
                     "extra": extra or {}}, path)


def load_generator(path: str | Path) -> DCGANGenerator:
    """A generator written by ``save_generator`` (``gradinv prior train``, GIML)."""
    what = f"generator file {path}"
    blob = load_torch_file(path, "generator file")
    if (not isinstance(blob, dict) or blob.get("kind") != "dcgan"
            or not isinstance(blob.get("settings"), dict) or "state_dict" not in blob):
        raise GradinvError(f"{what} was not written by 'gradinv prior train' (for your own "
                           "generator give package.module:factory and its weights)")
    try:
        gen = DCGANGenerator(**blob["settings"])
    except (TypeError, ValueError, RuntimeError, GradinvError):
        raise GradinvError(f"{what} has unusable settings {blob['settings']}") from None
    state = blob["state_dict"]
    if isinstance(state, Mapping):
        state = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                 for k, v in state.items()}
    load_weights(gen, state, what)
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
        blob = load_torch_file(path, "faces prior weights")
    what = f"faces prior weights {path}"
    if not isinstance(blob, dict) or "netG_state_dict" not in blob:
        raise GradinvError(f"{what} hold no 'netG_state_dict'; reinstall gan-face-generate")
    gen = DCGANGenerator(latent_dim=100, width=64, channels=3, image_size=64)
    load_weights(gen, blob["netG_state_dict"], what)
    return Prior(gen, 100, (-1.0, 1.0), "digiface-dcgan64")


def load_user_prior(factory: str, weights: str | Path | None, *, latent_dim: int | None,
                    output_range: tuple[float, float] = (-1.0, 1.0)) -> Prior:
    """``package.module:callable`` returning an nn.Module that maps (N, latent_dim) to images.

    The generator is run once on a small latent batch, so a wrong factory, latent size or
    output fails here with one line instead of deep inside an attack.
    """
    gen = build_module(factory, "generator")
    if weights is not None:
        state = load_torch_file(weights, "generator weights")
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        load_weights(gen, state, f"generator weights {weights} (for {factory!r})")
    prior = Prior(gen, _latent_size(factory, gen, latent_dim), output_range, factory)
    _probe(prior)
    return prior


def _latent_size(factory: str, gen: nn.Module, latent_dim: int | None) -> int:
    """The given latent size, checked against the generator's own ``latent_dim`` if it has one."""
    check_int("latent_dim", latent_dim, low=1, high=MAX_SIZE, optional=True,
              where=f"prior {factory!r}")
    own = getattr(gen, "latent_dim", None)
    if latent_dim is None and own is None:
        raise GradinvError(f"give the latent size of {factory!r} (--latent-dim)")
    if latent_dim is not None and own is not None and own != latent_dim:
        raise GradinvError(f"{factory!r} builds a generator with latent size {own}, not "
                           f"latent_dim={latent_dim}")
    return latent_dim if latent_dim is not None else own  # type: ignore[return-value]


def _probe(prior: Prior) -> None:
    """G(z) for two random latents must be a finite float image batch (2, C, H, W)."""
    z = torch.randn(2, prior.latent_dim, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = prior.generator(z)
    except Exception as err:  # noqa: BLE001  (user code can raise anything)
        raise GradinvError(f"generator {prior.name!r} fails on latents of shape "
                           f"(2, {prior.latent_dim}) ({one_line(err)}); check --latent-dim") from None
    if (not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.ndim != 4
            or out.shape[0] != 2 or 0 in out.shape):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise GradinvError(f"generator {prior.name!r} must map latents (N, {prior.latent_dim}) to "
                           f"float images (N, C, H, W); for N=2 it returned {got}")
    if not torch.isfinite(out).all():
        raise GradinvError(f"generator {prior.name!r} returned non-finite values for random latents")


def load_prior(source: str, *, weights: str | Path | None = None, latent_dim: int | None = None,
               output_range: tuple[float, float] = (-1.0, 1.0)) -> Prior:
    """'fashion-mnist' (shipped), 'faces', a path written by ``gradinv prior train``, or
    'package.module:factory' (with ``weights``)."""
    if weights is not None and ":" not in source:
        raise GradinvError(f"prior weights {weights} are only read for a package.module:factory "
                           f"generator, not for {source!r}")
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
    if "/" in source or Path(source).suffix:
        raise GradinvError(f"prior file {source} does not exist")
    raise GradinvError(f"unknown prior {source!r}: use fashion-mnist, faces, a generator file "
                       "or package.module:factory")
