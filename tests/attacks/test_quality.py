"""Regression band: on the sigmoid LeNet, one image leaks almost perfectly."""
import torch

from gradinv.attacks import create, infer_labels
from gradinv.fl import compute_update, observe
from gradinv.metrics import psnr
from gradinv.types import ThreatModel


def test_idlg_recovers_label_and_image(lenet_case):
    model, batch, _ = lenet_case
    obs = observe(compute_update(model, batch), ThreatModel(labels_known=False))
    rec = create("idlg", iterations=40).reconstruct(model, obs, image_shape=(1, 16, 16), seed=0,
                                                    progress=False)
    assert torch.equal(rec.labels, batch.labels)
    assert psnr(rec.images, batch.images).item() > 30


def test_gi_recovers_one_image(lenet_case):
    model, batch, obs = lenet_case
    rec = create("gi", iterations=600, restarts=2, lr=0.03, tv=0.0).reconstruct(
        model, obs, image_shape=(1, 16, 16), seed=0, progress=False)
    assert psnr(rec.images, batch.images).item() > 30


def test_batch_label_inference_is_exact_for_distinct_labels(default_data):
    from gradinv.data import private_batch
    from gradinv.models import build_model
    model = build_model("convnet", channels=1, width=8, seed=0)
    batch = private_batch(default_data, 6, size=32, channels=1)
    obs = observe(compute_update(model, batch), ThreatModel(labels_known=False))
    inferred = infer_labels(model, obs, 6, image_shape=(1, 32, 32), method="count")
    assert inferred.labels.tolist() == sorted(batch.labels.tolist())
