"""A Flower federation on Fashion-MNIST partitions, recorded by gradinv, then audited.

    pip install 'gradinv[flower]'
    FLWR_TELEMETRY_ENABLED=0 RAY_USAGE_STATS_ENABLED=0 \
        python examples/flower/run_flower.py --record records/flower --rounds 3 --clients 4
    gradinv audit records/flower --out runs/flower-audit

With ``--own-model`` the clients train ``client_model.Net``, a plain ``torch.nn`` model with
``nn.BatchNorm2d`` instead of a gradinv architecture; the record then describes it, and the
audit names its factory (gradinv never imports code named in a record)::

    python examples/flower/run_flower.py --record records/flower-own --own-model
    PYTHONPATH=examples/flower gradinv audit records/flower-own --model-factory client_model:Net

The ServerApp runs Flower's FedAvg wrapped in ``gradinv.record.flower.RecordingStrategy``; each
ClientApp trains the global model on a batch of its own partition with plain SGD (in torch
train mode) and replies with ``gradinv.record.flower.client_reply``: its arrays, number of examples,
local recipe, labels and, for this self-audit, its batch (kept under the record's private/ so
the audit can score reconstructions). Everything runs in-process on CPU with
``flwr.simulation.run_simulation``. Fashion-MNIST is read from the system's dataset package
(``apt-get install dataset-fashion-mnist``), or gradinv's embedded ``default`` dataset is used.
"""
from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from gradinv.data import load_dataset, to_model_input  # noqa: E402
from gradinv.data.partition import partition  # noqa: E402
from client_model import Net  # noqa: E402
from gradinv.record import ModelSpec  # noqa: E402
from gradinv.record.flower import RecordingStrategy, client_reply  # noqa: E402
from gradinv.models import DEFAULT_WIDTH, build_model, default_init_scheme  # noqa: E402
from gradinv.types import GradinvError, PrivateBatch  # noqa: E402


def available_dataset(name: str) -> str:
    """``name`` if its files are here, else gradinv's embedded ``default`` subset (said on the
    terminal): the settings the record keeps then name the data the clients really used."""
    try:
        load_dataset(name, split="train")
    except GradinvError as err:
        print(f"{name}: {err}; using gradinv's embedded default dataset instead")
        return "default"
    return name


def load_train(name: str):
    return load_dataset(name, split="train")


def make_model(settings: dict, num_classes: int, seed: int = 0) -> torch.nn.Module:
    """The clients' model: the user's own ``Net``, or a gradinv architecture."""
    if settings["own_model"]:
        torch.manual_seed(seed)
        return Net()
    return build_model(settings["model"], channels=1, num_classes=num_classes,
                       image_size=settings["image_size"], seed=seed)


def recorded_model(settings: dict, num_classes: int) -> dict:
    """What RecordingStrategy is told about the model: the module's factory and input shape,
    or the gradinv architecture."""
    if settings["own_model"]:
        return {"model": Net, "channels": 1, "num_classes": num_classes,
                "image_size": settings["image_size"]}
    name = settings["model"]
    return {"model": ModelSpec(name, DEFAULT_WIDTH[name], 1, num_classes, settings["image_size"],
                               default_init_scheme(name))}


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    c = msg.content["config"]
    settings = json.loads(str(c["gradinv-settings"]))
    partition_id = int(context.node_config["partition-id"])
    data = load_train(settings["dataset"])
    shard = partition(data.labels, int(context.node_config["num-partitions"]),
                      scheme="iid", seed=settings["seed"])[partition_id]
    rng = np.random.default_rng([settings["seed"], int(c["server-round"]), partition_id])
    index = torch.from_numpy(rng.choice(shard, settings["batch_size"], replace=False))
    images = to_model_input(data.images[index], settings["image_size"], 1)
    labels = data.labels[index]
    model = make_model(settings, data.num_classes)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=settings["lr"])
    for _ in range(settings["epochs"]):  # epochs passes over the batch, in order
        for start in range(0, len(labels), settings["local_batch_size"]):
            x = images[start:start + settings["local_batch_size"]]
            y = labels[start:start + settings["local_batch_size"]]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    content = client_reply(model.state_dict(), len(labels), partition_id=partition_id,
                           lr=settings["lr"], local_batch_size=settings["local_batch_size"],
                           epochs=settings["epochs"], labels=labels,
                           private=PrivateBatch(images, labels) if settings["private"] else None)
    return Message(content=content, reply_to=msg)


def make_server_app(settings: dict) -> ServerApp:
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        data = load_train(settings["dataset"])
        model = make_model(settings, data.num_classes, seed=settings["seed"])
        strategy = RecordingStrategy(
            FedAvg(fraction_evaluate=0.0, min_available_nodes=settings["clients"]),
            settings["record"], **recorded_model(settings, data.num_classes),
            data_channels=data.channels,
            store_private=settings["private"], federation=settings)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                       num_rounds=settings["rounds"],
                       train_config=ConfigRecord({"gradinv-settings": json.dumps(settings)}))

    return server_app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", required=True, help="new or empty folder for the record")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--model", default="lenet", help="a gradinv architecture")
    p.add_argument("--own-model", action="store_true",
                   help="train client_model.Net (plain torch.nn, 16x16 images) instead")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--local-batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--no-private", dest="private", action="store_false",
                   help="do not keep the clients' batches (the audit then scores nothing)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.own_model and a.image_size != 16:
        p.error("--own-model takes 16x16 images (client_model.Net)")
    settings = {k: getattr(a, k) for k in ("record", "rounds", "clients", "model", "own_model",
                                           "image_size", "batch_size", "lr",
                                           "local_batch_size", "epochs", "private", "seed")}
    settings["dataset"] = available_dataset(a.dataset)
    run_simulation(server_app=make_server_app(settings), client_app=client_app,
                   num_supernodes=a.clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})
    print(f"record: {a.record}")


if __name__ == "__main__":
    main()
