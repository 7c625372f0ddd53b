"""DLG: "Deep Leakage from Gradients" (Zhu, Liu, Han; NeurIPS 2019).

Optimise dummy images (and, when the labels are not known, dummy soft labels) with L-BFGS so
that their gradient matches the observed one in squared Euclidean distance. Needs: the model,
the update and the number of images. One iteration is one L-BFGS step (up to 20 inner
evaluations with a strong-Wolfe line search). L-BFGS couples everything it optimises through its line
search, so restarts run one after another here (GI batches them), and its line search reads
the cost on the host at every evaluation: only the step (cost and gradient) compiles.
"""
from __future__ import annotations

import torch
from torch.func import grad_and_value

from ..execution import Runner, plan
from ..progress import Progress
from ..types import Reconstruction
from .base import Attack, Target, check_hyperparameters, pick_winner, register, restart_generator

MAX_ITER = 20  # inner L-BFGS iterations per DLG iteration, about one step evaluation each


@register
class DLG(Attack):
    name = "dlg"
    summary = "Zhu et al. 2019: L2 gradient distance, L-BFGS, soft labels learned when unknown"
    infers_labels = False  # soft labels are learned with the images

    def __init__(self, *, iterations: int = 100, lr: float = 1.0, restarts: int = 1,
                 cost: str = "l2", top_k: int | None = None, compile: str = "auto") -> None:
        check_hyperparameters(self.name, locals())
        self.iterations, self.lr, self.restarts = iterations, lr, restarts
        self.cost, self.top_k, self.compile = cost, top_k, compile

    def invert(self, target: Target, *, image_shape: tuple[int, int, int], seed: int,
               device: torch.device, progress: bool) -> Reconstruction:
        soft_labels_learned = target.labels is None
        match = target.matching_cost(self.cost, self.top_k)

        def cost(v):
            labels = target.labels if target.labels is not None else v["label_logits"].softmax(-1)
            return match(v["images"], labels)

        step = Runner(grad_and_value(cost), plan(self.compile, device, self.iterations * MAX_ITER),
                      self.name)
        runs = [self._one_restart(target, step, image_shape, seed, r, device, progress)
                for r in range(self.restarts)]
        images = torch.stack([images for images, _, _, _ in runs])
        costs = torch.tensor([c for _, _, c, _ in runs])
        best = int(costs.argmin())
        labels = runs[best][1]
        target.labels = labels
        return pick_winner(target, images.clamp(0, 1), costs, runs[best][3], self.name,
                           soft_labels_learned=soft_labels_learned,
                           execution={self.name: step.execution.to_json()})

    def _one_restart(self, target: Target, step: Runner, image_shape: tuple[int, int, int],
                     seed: int, restart: int, device: torch.device, show: bool):
        gen = restart_generator(seed, restart)
        num_classes = target.observed[next(reversed(target.observed))].shape[0]
        variables = {"images": torch.rand((target.num_images, *image_shape), generator=gen)}
        if target.labels is None:
            variables["label_logits"] = torch.randn((target.num_images, num_classes), generator=gen)
        variables = {k: v.to(device).requires_grad_(True) for k, v in variables.items()}
        optimiser = torch.optim.LBFGS(list(variables.values()), lr=self.lr, max_iter=MAX_ITER,
                                      history_size=100, line_search_fn="strong_wolfe")
        bar = Progress(f"{self.name} restart {restart + 1}/{self.restarts}", self.iterations,
                       enabled=show)
        history: list[float] = []

        def closure():
            grads, value = step({k: v.detach() for k, v in variables.items()})
            for k, v in variables.items():
                v.grad = grads[k]
            return value

        for it in range(self.iterations):
            value = float(optimiser.step(closure))
            history.append(value)
            bar.update(it + 1, value)
        final = {k: v.detach() for k, v in variables.items()}
        labels = (target.labels if target.labels is not None
                  else final["label_logits"].argmax(-1))
        return final["images"], labels, float(step(final)[1]), history
