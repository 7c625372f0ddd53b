"""GIML: learn a generative image prior from the updates a server observes during FL training.

"Gradient Inversion with Generative Image Prior" (Kim, Jeon, Ok, Lee, Oh; NeurIPS 2021),
section 3.3. When no pretrained generator exists, the server meta-learns one from the sequence
of client updates it receives anyway. Starting from an untrained DCGAN (nz 100, width 64), for
every observed update used for learning:

1. latent search from the current G (GI-z: 1,000 iterations, Adam 3e-2, TV 1e-4, latent-norm
   1e-3, lr / 10 at 3/8, 5/8 and 7/8);
2. adaptation: a copy G' of the generator, started at G, is fitted to that update with the
   codes fixed (500 iterations, Adam 1e-3), exactly GIAS's generator stage;
3. meta step (first-order, Reptile-style): one Adam step (lr 1e-2) on |G - G'|^2, which moves G
   towards G'.

With ``meta_batch`` M > 1 (the paper and the official code use 1), a meta step adapts a copy to
each of M consecutive updates and moves G towards their mean (Reptile over a batch of tasks,
averaged): one meta step per M updates, a smoother direction, and a pass over the record in
1/M of the meta steps. Consecutive updates are mostly the clients of one round, which share
the broadcast weights: on a GPU their searches and adaptations run as one batched pass
(``attacks.group``; on a CPU, where a larger batch is compute-bound, one after the other).
Update t of the sequence (step s, place j: t = s * M + j) searches from seed * 1,000,003 + t,
batched or not.

The adapted copy is **shared by the images of an update**, as in the official code, not one
copy per image as in GIAS's attack: the meta-learner wants weights from which one short
adaptation explains a whole batch, i.e. what the client's images have in common, and a shared
copy cannot memorise one image per copy; it also costs 1/B of the memory. (The official code's
default StyleGAN2 path never moves G, because the distance it minimises compares G with
itself; here the distance is between G and the adapted copy, and a test checks that G moves.)

Only the observed part of an update is used (tensors, broadcast weights, and the labels / count
/ hyper-parameters the threat model grants); private batches are never read. Every random draw
derives from (seed, step), and checkpoints hold G, the meta-optimiser and the step, so an
interrupted run resumes to exactly the result of an uninterrupted one.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..checks import MAX_RATE, MAX_SIZE, GradinvError, check_float, check_int
from ..execution import batching_pays, fp32_precision
from ..files import (FolderLock, check_writable, keep_log_lines, load_torch_file,
                     save_torch_file)
from ..priors import DCGANGenerator, Prior, save_generator
from ..progress import Progress
from ..report import image_grid, log_chart, write_png
from ..types import Observation
from .base import prepare_target
from .gi_z import GIz
from .gias import adapt_generator
from .group import TargetGroup, stackable_groups


@dataclass(frozen=True)
class GIMLConfig:
    """GIML's settings; the defaults are the paper's (and the official code's)."""

    latent_dim: int = 100
    width: int = 64
    image_size: int = 32
    channels: int | None = None  # None: the attacked model's input channels
    latent_iterations: int = 1000
    latent_lr: float = 3e-2
    tv: float = 1e-4
    latent_norm: float = 1e-3
    adapt_iterations: int = 500
    adapt_lr: float = 1e-3
    meta_lr: float = 1e-2
    restarts: int = 1
    meta_batch: int = 1  # updates per meta step, their adapted copies averaged
    steps: int | None = None  # meta steps; None: one pass over the observations
    sample_every: int = 10
    checkpoint_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_iterations", "adapt_iterations", "restarts", "meta_batch",
                     "sample_every", "checkpoint_every"):
            check_int(name, getattr(self, name), low=1, where="GIML")
        for name in ("latent_dim", "width"):
            check_int(name, getattr(self, name), low=1, high=MAX_SIZE, where="GIML")
        check_int("steps", self.steps, low=1, optional=True, where="GIML")
        check_int("channels", self.channels, low=1, high=MAX_SIZE, optional=True, where="GIML")
        check_int("seed", self.seed, low=0, high=2**63 - 1, where="GIML")
        for name in ("latent_lr", "adapt_lr", "meta_lr"):
            check_float(name, getattr(self, name), low=0, low_open=True, high=MAX_RATE,
                        where="GIML")
        for name in ("tv", "latent_norm"):
            check_float(name, getattr(self, name), low=0, high=MAX_RATE, where="GIML")
        check_int("image_size", self.image_size, low=32, high=64, where="GIML")
        if self.image_size not in (32, 64):
            raise GradinvError(f"GIML's DCGAN makes 32 or 64 px images, not {self.image_size}")


@dataclass(frozen=True)
class MetaStep:
    """What one meta step did: the updates it adapted to (round, client), their matching cost
    after the latent search and after adaptation (means over the meta-batch), and the
    distance from G to the adapted copies' mean before and after the step."""

    step: int
    updates: list[tuple[int, int]]
    latent_cost: float
    adapted_cost: float
    distance_before: float
    distance_after: float


def untrained_generator(config: GIMLConfig, channels: int) -> DCGANGenerator:
    """The starting point: a DCGAN with its standard random init, seeded by ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return DCGANGenerator(latent_dim=config.latent_dim, width=config.width,
                              channels=channels, image_size=config.image_size)


def meta_step(generator: nn.Module, adapted: dict[str, torch.Tensor],
              optimiser: torch.optim.Optimizer) -> tuple[float, float]:
    """Reptile: one optimiser step on sum |G - G'|^2; returns the distance before and after."""
    params = dict(generator.named_parameters())
    before = _distance(params, adapted)
    for name, p in params.items():
        p.grad = 2 * (p.detach() - adapted[name])
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return before, _distance(params, adapted)


def mean_copy(copies: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The parameter-wise mean of adapted copies: Reptile's target for a batch of tasks (one
    copy is its own mean, so a meta-batch of 1 is the plain meta step)."""
    if len(copies) == 1:
        return copies[0]
    return {k: torch.stack([c[k] for c in copies]).mean(0) for k in copies[0]}


def _distance(params: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> float:
    return float(sum((params[k].detach() - other[k]).pow(2).sum() for k in params))


def adapt_to_observations(prior: Prior, model: nn.Module, observations: Sequence[Observation],
                          image_shape: tuple[int, int, int], config: GIMLConfig, *,
                          seeds: Sequence[int], device: torch.device, together: bool = True
                          ) -> list[tuple[dict[str, torch.Tensor], float, float]]:
    """Latent search then one shared adapted copy G' per observed update, each from its
    own of ``seeds``; ``together``: the updates of one round (a meta-batch's usual members)
    are searched and adapted in one batched pass (``attacks.group``), else one after the
    other, with the same starts.

    Returns, per update: G' (its best restart's), and the matching cost after the search and
    after adapting.
    """
    targets = [prepare_target(model, o, image_shape=image_shape, device=device)
               for o in observations]
    search = GIz(prior=prior, iterations=config.latent_iterations, lr=config.latent_lr,
                 restarts=config.restarts, tv=config.tv, latent_norm=config.latent_norm)
    found = {}
    groups = stackable_groups(targets) if together else [[i] for i in range(len(targets))]
    for indices in groups:
        group = TargetGroup([targets[i] for i in indices])
        stage1 = search.search_group(group, image_shape, [seeds[i] for i in indices], device,
                                     progress=False)
        stage2 = adapt_generator(prior, group, stage1.variables["z"], image_shape,
                                 iterations=config.adapt_iterations, lr=config.adapt_lr,
                                 tv=config.tv, per_image=False, progress=False)
        costs = stage2.matching_costs.nan_to_num(nan=float("inf"))
        for c, i in enumerate(indices):
            rows = group.rows(c, config.restarts)
            best = rows.start + int(costs[rows].argmin())
            adapted = {k: v[best, 0].detach() for k, v in stage2.variables.items()}
            found[i] = (adapted, float(stage1.matching_costs[best]),
                        float(stage2.matching_costs[best]))
    return [found[i] for i in range(len(targets))]


def learn_prior(
    model: nn.Module,
    observations: Sequence[Observation],
    image_shape: tuple[int, int, int],
    config: GIMLConfig,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log=print,
    source: str | None = None,
) -> Path:
    """Run GIML over ``observations`` (cycled in order) and write ``out/generator.pt``.

    ``model`` supplies the architecture only: each observation carries the weights of its own
    round. ``out`` holds checkpoint.pt (resumed from when present), samples-stepN.png,
    steps.jsonl (one line per meta step), costs.png (its costs) and settings.json; it is
    locked while written.
    ``source`` identifies the record the observations come from (``Record.identity``): the
    checkpoint keeps it, and resuming from another record is refused, since its step would
    index other updates.
    """
    if len(observations) == 0:
        raise GradinvError("GIML needs at least one observed update")
    if config.meta_batch > len(observations):
        raise GradinvError(f"a meta-batch of {config.meta_batch} updates is more than the "
                           f"{len(observations)} observed; lower --meta-batch")
    check_writable(out)
    # Read the first update (its file hashes are checked) and fit it to the model before
    # anything is written: a damaged record or a wrong shape leaves no half-made folder.
    prepare_target(model, observations[0], image_shape=image_shape, device=torch.device("cpu"))
    with FolderLock(out, "the GIML folder"), fp32_precision():
        device = torch.device(device)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        channels = config.channels or image_shape[0]
        generator = untrained_generator(config, channels).to(device)
        optimiser = torch.optim.Adam(generator.parameters(), lr=config.meta_lr)
        steps = config.steps or -(-len(observations) // config.meta_batch)
        start = _resume(out, config, generator, optimiser, log, source)
        if start >= steps:
            log(f"GIML has taken {start} meta steps already, as many as --steps {steps} asks: "
                "nothing to do (raise --steps to go on)")
        else:
            (out / "settings.json").write_text(json.dumps(
                {"giml": asdict(config), "generator": generator.settings(),
                 "observations": len(observations), "image_shape": list(image_shape),
                 "record": source}, indent=2))
        prior = Prior(generator, config.latent_dim, (-1.0, 1.0), "giml")
        fixed_z = torch.randn(32, config.latent_dim,
                              generator=torch.Generator().manual_seed(config.seed)).to(device)
        bar = Progress("GIML meta-step", steps, enabled=progress, metric="adapted cost")
        for step in range(start, steps):
            started = time.monotonic()
            tasks = range(step * config.meta_batch, (step + 1) * config.meta_batch)
            chosen = [observations[t % len(observations)] for t in tasks]
            copies, latent_costs, adapted_costs = zip(*adapt_to_observations(
                prior, model, chosen, image_shape, config,
                seeds=[config.seed * 1_000_003 + t for t in tasks], device=device,
                together=batching_pays(device)))
            before, after = meta_step(generator, mean_copy(copies), optimiser)
            adapted_cost = sum(adapted_costs) / len(adapted_costs)
            record = MetaStep(step + 1, [(o.round, o.client_id) for o in chosen],
                              sum(latent_costs) / len(latent_costs), adapted_cost, before, after)
            with (out / "steps.jsonl").open("a") as f:
                f.write(json.dumps({**asdict(record), "seconds": time.monotonic() - started}) + "\n")
            bar.update(step + 1, adapted_cost)
            done = step + 1
            if done % config.sample_every == 0 or done == steps:
                write_samples(prior, fixed_z, out / f"samples-step{done:05d}.png")
                log_chart(out / "steps.jsonl", out / "costs.png", x="step", xlabel="meta step",
                          curves={"after the latent search": "latent_cost",
                                  "after adaptation": "adapted_cost"},
                          ylabel="matching cost (meta-batch mean)", title="GIML meta steps",
                          log_scale=True)
            if done % config.checkpoint_every == 0 or done == steps:
                _save_checkpoint(out, config, generator, optimiser, done, source)
        final = out / "generator.pt"
        save_generator(generator.cpu(), final, extra={"giml": asdict(config), "record": source})
    return final


def write_samples(prior: Prior, z: torch.Tensor, path: Path) -> None:
    """A grid of G(z) for fixed codes, so the user sees the prior emerge over the steps."""
    with torch.no_grad():
        images = prior.to_model_input(prior.generator(z), prior.generator.image_size,
                                      prior.generator.channels).cpu()
    write_png(path, image_grid(list(images.split(8)), scale=2))


def _save_checkpoint(out: Path, config: GIMLConfig, generator: nn.Module,
                     optimiser: torch.optim.Optimizer, step: int, source: str | None) -> None:
    """Written atomically: an interrupt never leaves a half-written checkpoint."""
    save_torch_file({"config": asdict(config), "step": step, "generator": generator.state_dict(),
                     "optimiser": optimiser.state_dict(), "record": source},
                    out / "checkpoint.pt")


def _resume(out: Path, config: GIMLConfig, generator: nn.Module,
            optimiser: torch.optim.Optimizer, log, source: str | None) -> int:
    """Load ``out/checkpoint.pt`` if present (same settings but ``steps``, same record);
    return its step."""
    path = out / "checkpoint.pt"
    if not path.exists():
        (out / "steps.jsonl").unlink(missing_ok=True)
        return 0
    state = load_torch_file(path, "GIML checkpoint")
    try:
        # A checkpoint written before meta_batch existed used one update per step.
        saved = {"meta_batch": 1, **state["config"]}  # type: ignore[index]
        step = int(state["step"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise GradinvError(f"GIML checkpoint {path} lacks its config or step: not written by "
                           "gradinv prior learn") from None
    if {**saved, "steps": None} != {**asdict(config), "steps": None}:
        raise GradinvError(f"{path} was written with other GIML settings; use another --out "
                           "(only --steps may change when resuming)")
    if state.get("record") != source:  # type: ignore[union-attr]
        raise GradinvError(f"{path} was learned from another record (or from this one before "
                           "it changed): resuming would continue on other updates; use another "
                           "--out")
    generator.load_state_dict(state["generator"])
    optimiser.load_state_dict(state["optimiser"])
    keep_log_lines(out / "steps.jsonl", "step", step)
    log(f"resuming GIML from {path} after meta step {step}")
    return step
