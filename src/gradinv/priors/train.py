"""Train a DCGAN image prior (non-saturating GAN loss), with checkpoints that resume.

Objective: the non-saturating loss of Goodfellow et al. with the DCGAN recipe (Adam 2e-4,
beta1 0.5). It trains stably on small grey datasets such as Fashion-MNIST at 32 px on a CPU.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ..checks import MAX_RATE, MAX_SIZE, GradinvError, check_choice, check_float, check_int
from ..data import DATASETS, check_has_splits, load_dataset, to_model_input
from ..execution import FP32_PRECISION, fp32_precision
from ..files import (FolderLock, check_writable, keep_log_lines, load_torch_file, load_weights,
                     save_torch_file)
from ..progress import Progress
from ..report import image_grid, log_chart, write_png
from .dcgan import DCGANDiscriminator, DCGANGenerator, _stages
from .prior import save_generator

EPOCH_LOG = "epochs.jsonl"  # one line per finished epoch: its mean losses and seconds
CHECKPOINT_KEYS = ("config", "epoch", "generator", "discriminator", "opt_g", "opt_d", "rng")


@dataclass(frozen=True)
class PriorTrainingConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    split: str = "train"
    image_size: int = 32
    latent_dim: int = 100
    width: int = 64
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-4
    seed: int = 0
    max_images: int | None = None

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_has_splits(self.dataset, "a prior (trained on the train split only, so that "
                         "attacks on the test split stay honest)")
        for name in ("batch_size", "epochs"):
            check_int(name, getattr(self, name), low=1)
        for name in ("latent_dim", "width", "image_size"):
            check_int(name, getattr(self, name), low=1, high=MAX_SIZE)
        _stages(self.image_size)
        check_int("max_images", self.max_images, low=1, optional=True)
        check_float("lr", self.lr, low=0, low_open=True, high=MAX_RATE)
        check_int("seed", self.seed, low=0, high=2**63 - 1)


def train_prior(config: PriorTrainingConfig, out: str | Path, *,
                device: torch.device = torch.device("cpu"), progress: bool = True,
                log=print) -> Path:
    """Train (or resume) in ``out``; writes checkpoint.pt, samples-epochN.png, epochs.jsonl
    (the mean losses of each epoch), losses.png (their curves) and generator.pt.
    ``out`` is locked while written: a second training there is refused. The networks train
    on ``device``; every random draw comes from the CPU's generator, so a checkpoint resumes
    on any device."""
    if config.split != "train":
        raise GradinvError("a prior must be trained on the train split only, so that attacks "
                           "on held-out test images stay honest")
    check_writable(out)
    images = _training_images(config)
    with FolderLock(out, "the prior-training folder"), fp32_precision():
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        channels = images.shape[1]
        torch.manual_seed(config.seed)
        gen = DCGANGenerator(latent_dim=config.latent_dim, width=config.width,
                             channels=channels, image_size=config.image_size).to(device)
        disc = DCGANDiscriminator(width=config.width, channels=channels,
                                  image_size=config.image_size).to(device)
        opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
        fixed_z = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        checkpoint = out / "checkpoint.pt"
        start_epoch = 0
        if checkpoint.exists():
            start_epoch = _resume(checkpoint, config, gen, disc, opt_g, opt_d)
            log(f"{checkpoint} has all {config.epochs} epochs: nothing to do (raise --epochs "
                "to go on)" if start_epoch >= config.epochs else
                f"resuming from {checkpoint} after epoch {start_epoch}")
        keep_log_lines(out / EPOCH_LOG, "epoch", start_epoch)  # none without a checkpoint
        (out / "settings.json").write_text(json.dumps(
            {"training": asdict(config), "generator": gen.settings(), "device": str(device),
             "fp32_precision": FP32_PRECISION}, indent=2))
        steps = len(images) // config.batch_size
        for epoch in range(start_epoch, config.epochs):
            gen.train()
            bar = Progress(f"epoch {epoch + 1}/{config.epochs}", steps, enabled=progress,
                           metric="g_loss")
            order = torch.randperm(len(images))
            started = time.monotonic()
            d_sum = g_sum = torch.zeros((), device=device)
            for step in range(steps):
                real = images[order[step * config.batch_size:(step + 1) * config.batch_size]
                              ].to(device)
                d_loss, g_loss = _gan_step(gen, disc, opt_g, opt_d, real, config.latent_dim)
                d_sum, g_sum = d_sum + d_loss.detach(), g_sum + g_loss.detach()
                bar.update(step + 1, g_loss)
            gen.eval()
            with torch.no_grad():
                samples = (gen(fixed_z.to(device)).cpu() + 1) / 2
            write_png(out / f"samples-epoch{epoch + 1}.png", image_grid(list(samples.split(8)), scale=2))
            save_torch_file({"config": asdict(config), "epoch": epoch + 1, "generator": gen.state_dict(),
                             "discriminator": disc.state_dict(), "opt_g": opt_g.state_dict(),
                             "opt_d": opt_d.state_dict(), "rng": torch.get_rng_state()}, checkpoint)
            seconds = time.monotonic() - started
            losses = {"d_loss": float(d_sum) / steps, "g_loss": float(g_sum) / steps}
            with (out / EPOCH_LOG).open("a") as f:
                f.write(json.dumps({"epoch": epoch + 1, **losses, "seconds": seconds}) + "\n")
            log_chart(out / EPOCH_LOG, out / "losses.png", x="epoch", xlabel="epoch",
                      curves={"discriminator": "d_loss", "generator": "g_loss"},
                      ylabel="loss (epoch mean)", title="prior training")
            log(f"epoch {epoch + 1}: mean d_loss {losses['d_loss']:.3f} g_loss "
                f"{losses['g_loss']:.3f} ({seconds:.0f} s), checkpoint saved")
        final = out / "generator.pt"
        save_generator(gen.cpu(), final, extra={"training": asdict(config)})
    return final


def _training_images(config: PriorTrainingConfig) -> torch.Tensor:
    """The training images in the generator's range [-1, 1]; read, and checked against
    ``max_images`` and ``batch_size``, before anything is written."""
    data = load_dataset(config.dataset, data_dir=config.data_dir, split=config.split)
    if config.max_images is not None and config.max_images > len(data):
        raise GradinvError(f"max_images {config.max_images} is more than the {len(data)} images "
                           f"of {data.name!r}")
    images = data.images[:config.max_images]
    if len(images) < config.batch_size:
        raise GradinvError(f"fewer images than one batch ({len(images)} images, batch_size "
                           f"{config.batch_size}); lower --batch-size")
    return to_model_input(images, config.image_size, data.channels) * 2 - 1


def _resume(checkpoint: Path, config: PriorTrainingConfig, gen: DCGANGenerator,
            disc: DCGANDiscriminator, opt_g: torch.optim.Optimizer,
            opt_d: torch.optim.Optimizer) -> int:
    """Restore models, optimisers and the RNG from ``checkpoint``; return its epoch.

    The checkpoint holds only tensors and plain containers (the RNG state is a uint8 tensor,
    the config a dict), so it loads with ``weights_only=True`` like every other file.
    """
    state = load_torch_file(checkpoint, "prior-training checkpoint")
    if (not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS)
            or not isinstance(state["config"], dict) or not isinstance(state["epoch"], int)
            or not isinstance(state["rng"], torch.Tensor) or state["rng"].dtype != torch.uint8):
        raise GradinvError(f"{checkpoint} is not a prior-training checkpoint; use another --out")
    if _without_epochs(state["config"]) != _without_epochs(asdict(config)):
        raise GradinvError(f"{checkpoint} was written with other settings; use another --out "
                           "(only --epochs may change when resuming)")
    load_weights(gen, state["generator"], f"checkpoint {checkpoint} (generator)")
    load_weights(disc, state["discriminator"], f"checkpoint {checkpoint} (discriminator)")
    try:
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError):
        raise GradinvError(f"{checkpoint} holds an unusable optimiser or RNG state; use another "
                           "--out") from None
    return state["epoch"]


def _without_epochs(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "epochs"}


def _gan_step(gen, disc, opt_g, opt_d, real, latent_dim) -> tuple[torch.Tensor, torch.Tensor]:
    """One discriminator and one generator update with the non-saturating loss; the losses
    stay on the device (read when the progress bar draws)."""
    z = torch.randn(len(real), latent_dim).to(real.device)
    fake = gen(z)
    d_real, d_fake = disc(real), disc(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    d_gen = disc(fake)
    g_loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.detach(), g_loss.detach()
