"""Reference tests: compare against brute-force, hand-written computations."""
import itertools
import json
import math
import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gradinv.attacks.gi import GI
from gradinv.attacks.base import restart_generator
from gradinv.fl import compute_update
from gradinv.metrics import psnr, score, ssim
from gradinv.models import build_model
from gradinv.types import FedAvgConfig, PrivateBatch


def _batch(n=4, c=3, size=16):
    g = torch.Generator().manual_seed(5)
    return PrivateBatch(torch.rand(n, c, size, size, generator=g), torch.arange(n) % 3)


@pytest.mark.parametrize("name", ["lenet", "convnet", "resnet18"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fedsgd_gradient_matches_manual_backward(name, mode):
    model = build_model(name, channels=3, num_classes=3, image_size=16, width=4, seed=1)
    batch = _batch()
    update = compute_update(model, batch, mode=mode)
    model.train(mode == "train")
    model.zero_grad()
    F.cross_entropy(model(batch.images), batch.labels).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(update.tensors[n], p.grad, rtol=1e-4, atol=1e-5)


def test_fedavg_delta_matches_manual_sgd_loop():
    model = build_model("convnet", channels=3, num_classes=3, width=4, seed=2)
    batch = _batch(n=5)
    cfg = FedAvgConfig(lr=0.05, local_batch_size=2, epochs=2)
    update = compute_update(model, batch, kind="fedavg", fedavg=cfg)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model.eval()
    for _ in range(cfg.epochs):
        for i in range(0, 5, 2):
            opt.zero_grad()
            F.cross_entropy(model(batch.images[i:i + 2]), batch.labels[i:i + 2]).backward()
            opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(update.tensors[n], p.detach() - start[n], rtol=1e-4, atol=1e-6)


def test_batched_restarts_equal_each_restart_alone(lenet_case):
    model, batch, obs = lenet_case
    kw = dict(iterations=15, restarts=3, lr=0.05)
    batched = GI(batched=True, **kw).reconstruct(model, obs, image_shape=(1, 16, 16), seed=7,
                                                 progress=False)
    alone = GI(batched=False, **kw).reconstruct(model, obs, image_shape=(1, 16, 16), seed=7,
                                                progress=False)
    np.testing.assert_allclose(batched.restart_costs, alone.restart_costs, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(batched.images, alone.images, rtol=1e-3, atol=1e-3)
    assert batched.extras["winner"] == alone.extras["winner"]


def test_restart_initialisation_depends_only_on_seed_and_index():
    a = torch.rand(3, generator=restart_generator(1, 2))
    b = torch.rand(3, generator=restart_generator(1, 2))
    c = torch.rand(3, generator=restart_generator(1, 3))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_matching_equals_brute_force():
    rng = torch.Generator().manual_seed(0)
    for n in (1, 2, 5, 6):
        truth = torch.rand(n, 1, 8, 8, generator=rng)
        rec = torch.rand(n, 1, 8, 8, generator=rng)
        s = score(rec, truth, predicted_labels=torch.zeros(n, dtype=torch.long),
                  true_labels=torch.zeros(n, dtype=torch.long), num_classes=2)
        cost = (truth[:, None] - rec[None]).pow(2).flatten(2).mean(2)
        best = min(itertools.permutations(range(n)), key=lambda p: cost[range(n), p].sum())
        assert cost[range(n), s.order].sum().item() == pytest.approx(
            cost[range(n), list(best)].sum().item())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_diverged_reconstructions_are_scored_quickly_and_flagged(bad):
    truth = torch.rand(8, 3, 32, 32)
    rec = torch.rand(8, 3, 32, 32)
    rec[:5] = bad
    rec[6, 0, 0, 0] = bad
    started = time.monotonic()
    s = score(rec, truth, predicted_labels=torch.arange(8), true_labels=torch.arange(8),
              num_classes=10)
    assert time.monotonic() - started < 1.0
    assert s.diverged == 6 and all(math.isfinite(v) for v in s.psnr + s.ssim + s.mse)
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()  # valid JSON, no Infinity


def test_a_wrong_image_count_scores_what_can_be_matched():
    truth = torch.rand(4, 1, 8, 8)
    for rec, error in ((truth[[2, 0]].clone(), -2), (torch.cat([truth, torch.rand(2, 1, 8, 8)]), 2)):
        s = score(rec, truth, predicted_labels=torch.zeros(len(rec), dtype=torch.long),
                  true_labels=torch.zeros(4, dtype=torch.long), num_classes=2)
        assert s.count_error == error
        assert len(s.psnr) == min(len(rec), 4) and s.best_psnr == 100.0


def test_psnr_and_ssim_reference_values():
    a = torch.full((1, 1, 16, 16), 0.5)
    b = a + 0.1
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-3)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-6)
    noisy = (a + 0.3 * torch.randn_like(a)).clamp(0, 1)
    assert ssim(a, noisy).item() < 0.5
