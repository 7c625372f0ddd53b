"""Label inference: exact multisets where the counts follow in closed form, the contract every
registered method honours, and one clear line for what no method can read."""
import json

import pytest
import torch
from torch import nn

from gradinv.attacks import labels
from gradinv.attacks.labels import infer_labels
from gradinv.attacks.labels.base import integer_counts
from gradinv.checks import GradinvError
from gradinv.fl import compute_update, observe
from gradinv.metrics import label_accuracy, label_existence_accuracy
from gradinv.models import build_model
from gradinv.types import FedAvgConfig, PrivateBatch, ThreatModel

K = 10
SHAPE = (1, 4, 4)
BLIND = ThreatModel(labels_known=False)


def zero_linear(bias: bool = True) -> nn.Module:
    """Logits W x + b with W = b = 0: every prediction is uniform, p = 1/K, so the bias
    gradient is 1/K - k/n and the counts are k = n (1/K - grad b) exactly."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, K, bias=bias))
    nn.init.zeros_(model[1].weight)
    if bias:
        nn.init.zeros_(model[1].bias)
    return model


def pattern_batch(label_list: list[int]) -> PrivateBatch:
    """Grey images with one bright pixel per class: non-negative features, and each class
    has one of its own, as every method assumes."""
    labels = torch.tensor(label_list)
    images = torch.full((len(labels), 16), 0.5)
    images[torch.arange(len(labels)), labels] = 1.0
    return PrivateBatch(images.view(-1, *SHAPE), labels)


def observed(model, batch, *, fedavg=None, threat=BLIND):
    kind = "fedsgd" if fedavg is None else "fedavg"
    return observe(compute_update(model, batch, kind=kind, fedavg=fedavg), threat)


REPEATS = [0, 0, 0, 1, 3, 3, 7, 7, 7, 7, 9, 2]
COUNTING = ("ilrg", "llg", "rlu")  # the methods that count repeated labels


def test_the_closed_form_holds():
    batch = pattern_batch(REPEATS)
    obs = observed(zero_linear(), batch)
    counts = len(REPEATS) * (1 / K - obs.tensors["1.bias"])
    torch.testing.assert_close(counts, torch.bincount(batch.labels, minlength=K).float())


@pytest.mark.parametrize("method", COUNTING)
def test_counting_methods_recover_repeated_labels_exactly(method):
    batch = pattern_batch(REPEATS)
    inferred = infer_labels(zero_linear(), observed(zero_linear(), batch), len(REPEATS),
                            image_shape=SHAPE, method=method)
    assert inferred.labels.tolist() == sorted(REPEATS) and inferred.method == method


def test_rlu_follows_the_local_steps():
    """Ten local steps move the predictions: read at the broadcast weights (LLG+, iLRG) the
    delta gives wrong counts; averaged along the local trajectory (RLU) it gives the right
    ones."""
    obs = observed(zero_linear(), pattern_batch(REPEATS),
                   fedavg=FedAvgConfig(lr=0.1, local_batch_size=4, epochs=5))
    def infer(method):
        return infer_labels(zero_linear(), obs, len(REPEATS), image_shape=SHAPE,
                            method=method).labels.tolist()
    assert infer("rlu") == sorted(REPEATS)
    assert infer("llg") != sorted(REPEATS) and infer("ilrg") != sorted(REPEATS)


@pytest.mark.parametrize("method", sorted(labels.available()))
def test_every_method_recovers_distinct_labels(method):
    distinct = [8, 1, 4, 6]
    batch = pattern_batch(distinct)
    inferred = infer_labels(zero_linear(), observed(zero_linear(), batch), 4,
                            image_shape=SHAPE, method=method)
    assert inferred.labels.tolist() == sorted(distinct)


@pytest.fixture(scope="module")
def cases(default_data):
    """A FedSGD gradient of a LeNet (eval) and a FedAvg delta of a ConvNet in train mode, both
    from batches with repeated labels."""
    from gradinv.data import private_batch
    lenet = build_model("lenet", channels=1, image_size=16, seed=0)
    convnet = build_model("convnet", channels=1, width=4, seed=0)
    small = private_batch(default_data, 12, size=16, channels=1, distinct_labels=False)
    large = private_batch(default_data, 20, size=32, channels=1, distinct_labels=False)
    fedavg = FedAvgConfig(lr=0.05, local_batch_size=8, epochs=2)
    train = ThreatModel(labels_known=False, model_mode="train")
    return [(lenet, observed(lenet, small), small, (1, 16, 16)),
            (convnet, observe(compute_update(convnet, large, kind="fedavg", fedavg=fedavg,
                                             mode="train"), train), large, (1, 32, 32))]


@pytest.mark.parametrize("method", sorted(labels.available()))
def test_label_method_contract(method, cases):
    for model, obs, batch, shape in cases:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        n = len(batch.labels)
        runs = [infer_labels(model, obs, n, image_shape=shape, method=method) for _ in range(2)]
        assert torch.equal(runs[0].labels, runs[1].labels)  # deterministic
        got = runs[0].labels
        assert got.dtype == torch.long and got.shape == (n,)
        assert got.tolist() == sorted(got.tolist()) and 0 <= got.min() and got.max() < K
        assert runs[0].method == method
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k])


@pytest.mark.parametrize("estimate, counts", [
    ([2.4, 0.9, -0.3, 0.7], [2, 1, 0, 1]),
    ([30.0, 5.0, 0.0, 0.0], [4, 0, 0, 0]),  # an over-estimate is trimmed where it is largest
    ([1e15, 3.0, float("nan"), -1e15], [4, 0, 0, 0]),  # ill-conditioned: scaled down at once
    ([float("inf"), float("inf"), 0.0, 0.0], [2, 2, 0, 0]),
    ([float("nan")] * 4, [1, 1, 1, 1]),  # nothing known: spread evenly
])
def test_integer_counts_sum_to_the_batch_whatever_the_estimate(estimate, counts):
    got = integer_counts(torch.tensor(estimate, dtype=torch.float64), 4)
    assert got.tolist() == counts


def test_auto_picks_rlu_and_falls_back_to_the_counting_rule():
    batch = pattern_batch(REPEATS)
    n = len(REPEATS)
    fedavg = FedAvgConfig(lr=0.1, local_batch_size=4, epochs=2)
    assert infer_labels(zero_linear(), observed(zero_linear(), batch), n,
                        image_shape=SHAPE).method == "rlu"
    withheld = ThreatModel(labels_known=False, local_hparams_known=False)
    obs = observed(zero_linear(), batch, fedavg=fedavg, threat=withheld)
    assert infer_labels(zero_linear(), obs, n, image_shape=SHAPE).method == "count"
    no_bias = zero_linear(bias=False)
    assert infer_labels(no_bias, observed(no_bias, batch), n,
                        image_shape=SHAPE).method == "count"


@pytest.mark.parametrize("method", ["ilrg", "rlu", "llg"])
def test_withheld_local_recipe_is_one_clear_line(method):
    withheld = ThreatModel(labels_known=False, local_hparams_known=False)
    obs = observed(zero_linear(), pattern_batch(REPEATS), threat=withheld,
                   fedavg=FedAvgConfig(lr=0.1, local_batch_size=4, epochs=2))
    with pytest.raises(GradinvError, match=f"label method '{method}' needs the client's local "
                       "learning rate") as err:
        infer_labels(zero_linear(), obs, len(REPEATS), image_shape=SHAPE, method=method)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["ilrg", "rlu"])
def test_an_update_without_a_classifier_bias_is_one_clear_line(method):
    model = zero_linear(bias=False)
    obs = observed(model, pattern_batch(REPEATS))
    with pytest.raises(GradinvError, match=r"needs the update of the classifier's bias \(1.bias\)"
                       ) as err:
        infer_labels(model, obs, len(REPEATS), image_shape=SHAPE, method=method)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", sorted(labels.available()))
def test_a_batch_size_the_update_cannot_explain_is_one_clear_line(method):
    obs = observed(zero_linear(), pattern_batch([0, 1, 2, 3, 4]))  # five classes present
    with pytest.raises(GradinvError, match="cannot come from 3 images: its classifier bias "
                       "shows 5 classes") as err:
        infer_labels(zero_linear(), obs, 3, image_shape=SHAPE, method=method)
    assert "\n" not in str(err.value)
    with pytest.raises(GradinvError, match="at least one image"):
        infer_labels(zero_linear(), obs, 0, image_shape=SHAPE, method=method)


def test_a_known_noise_defense_lifts_the_sign_proof():
    threat = ThreatModel(labels_known=False, defense_known=True)
    update = compute_update(zero_linear(), pattern_batch([0, 1, 2, 3, 4]), defenses=[])
    obs = observe(update, threat)
    with pytest.raises(GradinvError, match="cannot come from 3 images"):
        infer_labels(zero_linear(), obs, 3, image_shape=SHAPE, method="count")
    from gradinv.defenses import create
    noisy = observe(compute_update(zero_linear(), pattern_batch([0, 1, 2, 3, 4]),
                                   defenses=[create("noise", sigma=1e-3)]), threat)
    assert len(infer_labels(zero_linear(), noisy, 3, image_shape=SHAPE, method="count").labels) == 3


def test_unknown_method_names_the_choices():
    obs = observed(zero_linear(), pattern_batch([1, 2]))
    with pytest.raises(GradinvError, match="unknown label method 'nope'; choose one of count"):
        infer_labels(zero_linear(), obs, 2, image_shape=SHAPE, method="nope")


def test_label_leak_scores():
    true = torch.tensor([0, 0, 1, 3])
    guess = torch.tensor([0, 1, 1, 2])
    assert label_accuracy(guess, true, 5) == 0.5  # one 0 and one 1 recovered
    assert label_existence_accuracy(guess, true, 5) == 0.6  # 0, 1, 4 right; 2, 3 wrong


def test_the_label_leak_is_written_to_the_run(tmp_path, capsys):
    from gradinv.cli import main
    code = main(["attack", "--attack", "gi,dlg", "--model", "lenet", "--image-size", "16",
                 "--batch-size", "12", "--allow-repeated-labels", "--unknown-labels",
                 "--label-method", "ilrg", "--set", "dlg.iterations=1", "--iterations", "2",
                 "--restarts", "1", "--compile", "off", "--quiet", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    (folder,) = tmp_path.iterdir()
    config = json.loads((folder / "config.json").read_text())
    assert config["attacks"]["gi"]["label_method"] == "ilrg"
    assert "label_method" not in config["attacks"]["dlg"]  # DLG learns its labels
    metrics = json.loads((folder / "metrics.json").read_text())
    gi, dlg = metrics["gi"], metrics["dlg"]
    assert gi["label_method"] == "ilrg" and gi["labels_inferred"]
    assert sum(gi["true_label_counts"]) == sum(gi["label_counts"]) == 12
    assert gi["label_counts"] == torch.bincount(torch.tensor(gi["labels"]), minlength=K).tolist()
    truth = torch.tensor([c for c, k in enumerate(gi["true_label_counts"]) for _ in range(k)])
    assert gi["label_accuracy"] == label_accuracy(torch.tensor(gi["labels"]), truth, K)
    assert gi["label_existence_accuracy"] == label_existence_accuracy(
        torch.tensor(gi["labels"]), truth, K)
    assert dlg["labels_inferred"] and dlg["label_method"] is None
    page = (folder / "report.html").read_text()
    assert "Label leak" in page and "inferred (ilrg)" in page and "learned with the images" in page


def test_an_audit_reports_the_label_leak_per_client_and_round(tmp_path):
    from gradinv.cli import main
    record = tmp_path / "r"
    assert main(["fl", "simulate", "--model", "lenet", "--dataset", "default", "--image-size",
                 "16", "--clients", "2", "--rounds", "2", "--batch-size", "6",
                 "--test-images", "20", "--unknown-labels", "--quiet", "--record",
                 str(record)]) == 0
    assert main(["audit", str(record), "--attack", "gi", "--iterations", "1", "--restarts", "1",
                 "--compile", "off", "--label-method", "count", "--device", "cpu", "--quiet",
                 "--out",
                 str(tmp_path / "o")]) == 0
    (folder,) = (tmp_path / "o").iterdir()
    summary = json.loads((folder / "leakage.json").read_text())
    assert len(summary["updates"]) == 4
    for update in summary["updates"]:
        assert update["label_method"] == "count" and update["labels_inferred"]
        assert 0 <= update["label_existence_accuracy"] <= 1
    for key in ("clients", "rounds"):
        assert all(g["label_existence_accuracy"] is not None for g in summary[key])
    assert "<th>label existence acc.</th>" in (folder / "report.html").read_text()
