"""Attacks with tiny settings, shared by the attack contract and the defense tests."""
import inspect

import torch

from gradinv import attacks
from gradinv.priors import DCGANGenerator, Prior

FAST = {"iterations": 3, "restarts": 2}


def make(name: str, **kw):
    """Create an attack with tiny settings; attacks that need a generator get a small random one."""
    params = inspect.signature(attacks.base.REGISTRY.get(name).__init__).parameters
    extra = {}
    if "prior" in params:
        torch.manual_seed(0)
        extra["prior"] = Prior(DCGANGenerator(latent_dim=8, width=8, channels=1, image_size=32), 8)
    return attacks.create(name, **FAST, **extra, **kw)
