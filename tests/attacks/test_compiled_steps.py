"""Every attack's step traces as one graph for torch.compile, and what ran is reported. The
trace is dynamo's alone (the eager backend: a graph break fails, nothing is compiled);
compiling itself is tested once, on the tiniest model, in tests/test_optim.py."""
import pytest
import torch

from gradinv import attacks, execution
from gradinv.priors import DCGANGenerator, Prior


@pytest.mark.parametrize("name", sorted(attacks.available()))
def test_every_attack_step_traces_as_one_graph(name, lenet_case, monkeypatch):
    monkeypatch.setattr(execution, "BACKEND", "eager")
    model, batch, observation = lenet_case
    kw = {"iterations": 1 if "dlg" in name else 2, "restarts": 2, "compile": "on"}
    if "prior" in attacks.accepted_hyperparameters(name):
        torch.manual_seed(0)
        kw["prior"] = Prior(DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32), 4)
    rec = attacks.create(name, **kw).reconstruct(model, observation, image_shape=(1, 16, 16),
                                                 progress=False)
    loops = rec.extras["execution"]
    assert loops and all(ran["mode"] == "compiled" for ran in loops.values()), loops
    assert rec.images.shape == batch.images.shape
