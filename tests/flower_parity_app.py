"""A Flower federation whose clients are those of gradinv's own simulated federation.

Run as a script (``python flower_parity_app.py RECORD_DIR CONFIG_JSON``): a ServerApp with
Flower's FedAvg wrapped in ``RecordingStrategy``, and ClientApps that draw the batches
``gradinv.fl.federation.Federation`` draws for them (same partition, seeds and order of draws)
and train as its clients do (``FunctionalModel.local_sgd``), replying with their parameters.
Every client of the federation takes part in every round (``clients_per_round ==
num_clients``), as Flower's FedAvg samples all nodes.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from gradinv.fl.federation import Federation, FederationConfig
from gradinv.fl.functional import FunctionalModel
from gradinv.record.flower import RecordingStrategy, client_reply
from gradinv.audit.config import config_from_dict
from gradinv.types import PrivateBatch


def client_batch(federation: Federation, round: int, client: int) -> PrivateBatch:
    """The batch ``Federation.run_round`` draws for ``client`` in ``round``: the round's
    draws replayed in the same order up to this client's."""
    c = federation.config
    rng = np.random.default_rng([c.seed, round])
    for sampled in np.sort(rng.choice(c.num_clients, c.clients_per_round, replace=False)):
        batch = federation.client_batch(int(sampled), rng)
        if sampled == client:
            return batch
    raise ValueError(f"client {client} is not sampled in round {round}")


def train_reply(federation: Federation, state: dict, round: int, client: int):
    """What the client sends: its parameters after gradinv's local SGD on its batch."""
    c = federation.config
    batch = client_batch(federation, round, client)
    federation.model.load_state_dict(state)
    params = FunctionalModel(federation.model, c.threat.model_mode).local_sgd(
        batch.images, batch.labels, c.fedavg)
    return client_reply({**state, **params}, len(batch.labels), partition_id=client,
                        lr=c.fedavg.lr, local_batch_size=c.fedavg.local_batch_size,
                        epochs=c.fedavg.epochs, labels=batch.labels, private=batch)


def make_apps(record: str, config: FederationConfig) -> tuple[ServerApp, ClientApp]:
    server_app, client_app = ServerApp(), ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        content = train_reply(Federation(config), msg.content["arrays"].to_torch_state_dict(),
                              int(msg.content["config"]["server-round"]) - 1,
                              int(context.node_config["partition-id"]))
        return Message(content=content, reply_to=msg)

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        federation = Federation(config)
        meta = federation.record_meta()
        strategy = RecordingStrategy(
            FedAvg(fraction_evaluate=0.0, min_available_nodes=config.num_clients), record,
            model=meta.model, threat=config.threat, data_channels=meta.data_channels,
            store_private=True)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(federation.model.state_dict()),
                       num_rounds=config.rounds)

    return server_app, client_app


if __name__ == "__main__":
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    settings = config_from_dict(FederationConfig, json.loads(sys.argv[2]))
    server, client = make_apps(sys.argv[1], settings)  # type: ignore[arg-type]
    run_simulation(server_app=server, client_app=client, num_supernodes=settings.num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})
