"""A Flower server's side, driven by hand: gradinv's RecordingStrategy around Flower's FedAvg,
clients that take one SGD step and reply (a gradinv architecture, or the user's own TinyNet).
Shared by tests/record/test_flower_recording.py and tests/audit/test_flower_audit.py, which
import the fixtures ``flower_run`` (autouse) and ``own_record`` from here."""
from types import SimpleNamespace

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from gradinv.models import build_model
from gradinv.record import ModelSpec
from gradinv.record.flower import RecordingStrategy, client_reply
from gradinv.types import PrivateBatch

SPEC = ModelSpec("lenet", 12, 1, 10, 16, "dlg-uniform")
LR = 0.1


@pytest.fixture(autouse=True)
def flower_run(monkeypatch):
    """FedAvg builds real Messages, which need the identity of a run (Flower sets it when a
    ServerApp runs; these tests call the strategy directly)."""
    from flwr.supercore.task_identity import TaskIdentity
    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1, raising=False)


class Grid:
    """The part of a Flower Grid that FedAvg's configure_train uses."""

    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return list(self.nodes)


def reply(node, content):
    """A client's reply as the server's strategy receives it."""
    return SimpleNamespace(content=content, metadata=SimpleNamespace(src_node_id=node),
                           has_error=lambda: False, has_content=lambda: True)


def one_step(state, batch):
    """The client: one plain SGD step on its whole batch, in train mode; returns its new state
    and the gradient it stepped with."""
    model = build_model("lenet", channels=1, num_classes=10, image_size=16)
    model.load_state_dict(state)
    model.train()
    torch.nn.functional.cross_entropy(model(batch.images), batch.labels).backward()
    gradient = {k: p.grad.clone() for k, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    return model.state_dict(), gradient


def batches(n=2, size=3):
    g = torch.Generator().manual_seed(1)
    return [PrivateBatch(torch.rand(size, 1, 16, 16, generator=g),
                         torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def run_round(strategy, state, server_round=1, declare=None, nodes=(5001, 9002)):
    """Configure, let each client take one step, aggregate: what the clients sent."""
    strategy.configure_train(server_round, ArrayRecord(state), ConfigRecord(), Grid(nodes))
    sent, replies = [], []
    for client, (node, batch) in enumerate(zip(nodes, batches(len(nodes)))):
        new, gradient = one_step(state, batch)
        kwargs = dict(partition_id=client, lr=LR, local_batch_size=len(batch.labels), epochs=1,
                      labels=batch.labels, private=batch)
        kwargs.update(declare or {})
        replies.append(reply(node, client_reply(new, len(batch.labels), **kwargs)))
        sent.append((new, gradient, batch))
    arrays, _ = strategy.aggregate_train(server_round, replies)
    return sent, replies, arrays


def initial_state():
    return build_model("lenet", channels=1, num_classes=10, image_size=16, seed=3).state_dict()


def own_model_round(strategy, state, server_round=1):
    """Two clients train TinyNet (torch BatchNorm2d, train mode: running statistics move) for
    one SGD step and reply; returns what the server aggregated."""
    from custom_models import TinyNet
    strategy.configure_train(server_round, ArrayRecord(state), ConfigRecord(), Grid([3, 4]))
    replies = []
    for client, batch in enumerate(batches()):
        model = TinyNet()
        model.load_state_dict(state)
        torch.nn.functional.cross_entropy(model(batch.images), batch.labels).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
        replies.append(reply(client + 3, client_reply(
            model.state_dict(), 3, partition_id=client, lr=LR, local_batch_size=3, epochs=1,
            labels=batch.labels, private=batch)))
    arrays, _ = strategy.aggregate_train(server_round, replies)
    return arrays.to_torch_state_dict()


@pytest.fixture
def own_record(tmp_path):
    """Two rounds of a federation of TinyNet, recorded from its class (the factory)."""
    from custom_models import TinyNet
    strategy = RecordingStrategy(FedAvg(fraction_evaluate=0.0), tmp_path / "own", model=TinyNet,
                                 channels=1, num_classes=10, image_size=16, store_private=True)
    torch.manual_seed(0)
    state = own_model_round(strategy, TinyNet().state_dict())
    own_model_round(strategy, state, server_round=2)
    return tmp_path / "own"
