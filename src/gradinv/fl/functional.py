"""The client's computation written functionally, so the attacker can run it on candidate images.

The real client and the attacker call the *same* functions: ``fedsgd_update`` and
``fedavg_update`` take parameters as a dict and are differentiable (and vmappable) with respect
to the images, which is what gradient inversion optimises through.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad
from torch.nn import functional as F

from ..checks import GradinvError
from ..models.adapt import adapt_model
from ..models.layers import BatchNorm2d
from ..types import FedAvgConfig, GradientFn, ModelMode, Params


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; ``labels`` are class indices (N,) or soft label distributions (N, K)."""
    if labels.ndim == 2:
        return -(labels * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    return F.cross_entropy(logits, labels)


def load_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state dict, with one clear error when it belongs to another architecture."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise GradinvError(f"the weights do not fit the model ({first})") from None


class FunctionalModel:
    """A frozen copy of a model with its parameters and buffers as plain tensors.

    BatchNorm layers never update their running statistics here (see ``BatchNorm2d``), so the
    user's model is never mutated and the computation vmaps.
    """

    def __init__(self, model: nn.Module, mode: ModelMode,
                 device: torch.device | str | None = None,
                 state: dict[str, torch.Tensor] | None = None) -> None:
        """``state`` (a state dict) replaces the model's own weights in the copy: the attacker
        builds the client from the architecture plus the weights broadcast that round."""
        # torch.nn.BatchNorm2d becomes gradinv's (same state); what cannot vmap is refused here
        self.module = adapt_model(model).train(mode == "train")
        if state is not None:
            load_state(self.module, state)
        if device is not None:
            self.module.to(device)
        for m in self.module.modules():
            if isinstance(m, BatchNorm2d):
                m.freeze_stats()
        self.params: Params = {k: v.detach() for k, v in self.module.named_parameters()}
        self.buffers: Params = {k: v.detach() for k, v in self.module.named_buffers()}

    def loss(self, params: Params, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.module, (params, self.buffers), (images,))
        return cross_entropy(logits, labels)

    def step_gradient(self, params: Params, images: torch.Tensor, labels: torch.Tensor,
                      gradient: GradientFn | None = None) -> Params:
        """The gradient one local step uses: of the mean batch loss, or ``gradient``'s."""
        if gradient is None:
            return grad(self.loss)(params, images, labels)
        return gradient(self.loss, params, images, labels)

    def fedsgd_update(self, images: torch.Tensor, labels: torch.Tensor,
                      gradient: GradientFn | None = None) -> Params:
        """The gradient of the mean batch loss w.r.t. every parameter (or ``gradient``'s)."""
        return self.step_gradient(self.params, images, labels, gradient)

    def local_sgd(self, images: torch.Tensor, labels: torch.Tensor, cfg: FedAvgConfig,
                  gradient: GradientFn | None = None) -> Params:
        """theta_K: the parameters after ``cfg.epochs`` passes of SGD over the batch in fixed
        order (each step with ``gradient``'s gradient when given); what a FedAvg client sends
        in a framework that ships parameters (Flower)."""
        params = dict(self.params)
        n = images.shape[0]
        for _ in range(cfg.epochs):
            for start in range(0, n, cfg.local_batch_size):
                stop = min(start + cfg.local_batch_size, n)
                grads = self.step_gradient(params, images[start:stop], labels[start:stop],
                                           gradient)
                params = {k: params[k] - cfg.lr * grads[k] for k in params}
        return params

    def fedavg_update(self, images: torch.Tensor, labels: torch.Tensor, cfg: FedAvgConfig,
                      gradient: GradientFn | None = None) -> Params:
        """theta_K - theta_0 (see ``local_sgd``)."""
        params = self.local_sgd(images, labels, cfg, gradient)
        return {k: params[k] - self.params[k] for k in params}
