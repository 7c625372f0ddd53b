"""The honest client, and the filter that turns its update into what the server observes."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import GradinvError
from ..defenses.base import ClientContext, Defense
from ..defenses.pipeline import DefensePipeline
from ..models import has_batch_norm
from ..models.layers import BatchNorm2d
from ..types import ClientUpdate, FedAvgConfig, Observation, PrivateBatch, ThreatModel, UpdateKind
from .functional import FunctionalModel


def compute_update(
    model: nn.Module,
    batch: PrivateBatch,
    *,
    kind: UpdateKind = "fedsgd",
    fedavg: FedAvgConfig | None = None,
    mode: str = "eval",
    round: int = 0,
    client_id: int = 0,
    defenses: DefensePipeline | Sequence[Defense] = (),
    seed: int = 0,
    device: torch.device | None = None,
) -> ClientUpdate:
    """Run the client's local computation on its private batch (FedSGD gradient or FedAvg delta),
    starting from ``model``'s current state (what the server broadcast), then its ``defenses``
    in order (DP-SGD inside the local steps, the others on the result) before anything is sent.
    ``seed``: the run's seed, which random defenses mix into their draws. ``device``: where the
    client computes (default: where ``model`` is); the update comes back where the batch is."""
    if kind not in ("fedsgd", "fedavg"):
        raise GradinvError(f"update kind must be 'fedsgd' or 'fedavg', not {kind!r}")
    pipeline = defenses if isinstance(defenses, DefensePipeline) else DefensePipeline(defenses)
    fmodel = FunctionalModel(model, mode, device)  # type: ignore[arg-type]
    home = batch.images.device
    images, labels = batch.images.to(device or home), batch.labels.to(device or home)
    client = ClientContext(fmodel, images, labels)
    cfg = None if kind == "fedsgd" else fedavg or FedAvgConfig()
    pipeline.check_releases(1 if cfg is None else cfg.epochs)  # each epoch uses an example once
    gradient = pipeline.client_gradient(client, round=round, client_id=client_id,
                                        run_seed=seed)
    if cfg is None:
        tensors = fmodel.fedsgd_update(images, labels, gradient)
    else:
        tensors = fmodel.fedavg_update(images, labels, cfg, gradient)
    tensors = pipeline.apply(tensors, client, round=round, client_id=client_id, run_seed=seed)
    return ClientUpdate(
        kind=kind,
        tensors={k: v.detach().to(home) for k, v in tensors.items()},
        labels=batch.labels.clone(),
        num_images=len(labels),
        fedavg=cfg,
        broadcast={k: v.detach().clone() for k, v in model.state_dict().items()},
        bn_stats={name: (mean.to(home), var.to(home)) for name, (mean, var)
                  in _batch_norm_statistics(fmodel.module, images).items()},
        round=round,
        client_id=client_id,
        defenses=pipeline.specs,
    )


def _batch_norm_statistics(model: nn.Module, images: torch.Tensor) -> dict:
    """Per-layer batch mean/variance of every BatchNorm input on the client's batch."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            def record(_m, inputs, _out, name=name):
                x = inputs[0].detach()
                stats[name] = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))
            hooks.append(m.register_forward_hook(record))
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return stats


def check_threat_fits(threat: ThreatModel, model: nn.Module) -> None:
    """A threat model granting what the model cannot leak is refused: BatchNorm statistics of
    a model without BatchNorm would be recorded as leaked while nothing is."""
    if threat.bn_stats_known and not has_batch_norm(model):
        raise GradinvError(f"--bn-stats says the client leaks BatchNorm statistics, but the "
                           f"model ({type(model).__name__}) has no BatchNorm layers: drop "
                           "--bn-stats (bn_stats_known)")


def observe(update: ClientUpdate, threat: ThreatModel) -> Observation:
    """What the server receives: the update, plus only the metadata the threat model allows."""
    return Observation(
        kind=update.kind,
        tensors=dict(update.tensors),
        threat=threat,
        labels=update.labels.clone() if threat.labels_known else None,
        num_images=update.num_images if threat.num_images_known else None,
        fedavg=update.fedavg if threat.local_hparams_known else None,
        broadcast=update.broadcast,
        bn_stats=update.bn_stats if threat.bn_stats_known else None,
        round=update.round,
        client_id=update.client_id,
        defenses=tuple(s.public() for s in update.defenses) if threat.defense_known else None,
    )
