"""Property tests: every number, switch and name a user can hand to an attack or a config is
refused with the parameter's name when it is non-finite, out of range or of the wrong type,
and accepted when valid. Attacks are only constructed here, never run."""
import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinv import attacks
from gradinv.attacks.base import HYPERPARAMETER_RULES, REGISTRY
from gradinv.attacks import labels
from gradinv.attacks.gi import INITS
from gradinv.attacks.objectives import COSTS
from gradinv.priors import DCGANGenerator, Prior
from gradinv.priors.train import PriorTrainingConfig
from gradinv.types import FedAvgConfig, GradinvError, PrivateBatch, ThreatModel

EXAMPLES = settings(max_examples=25, deadline=None, database=None)
NOT_NUMBERS = st.text(max_size=4) | st.booleans() | st.lists(st.integers(), max_size=2)


def integer(low: int, high: int = 10**9, *, optional: bool = False):
    """(valid, invalid) strategies for an integer setting in [low, high] (floats such as 3.0 are
    invalid; every integer setting has an upper bound, 10**9 unless it says otherwise)."""
    valid = st.integers(low, high) | (st.none() if optional else st.nothing())
    invalid = (st.integers(max_value=low - 1) | st.integers(min_value=high + 1) | st.floats()
               | NOT_NUMBERS | (st.nothing() if optional else st.none()))
    return valid, invalid


def real(low: float, *, open_low: bool, high: float = 1e6):
    """(valid, invalid) strategies for a finite number >= low (> low when ``open_low``) and
    <= high (attack learning rates and weights stop at 1e6: beyond, float32 overflows)."""
    ok = (lambda v: v > low) if open_low else (lambda v: v >= low)
    valid = (st.floats(min_value=low, max_value=high, allow_nan=False).filter(ok)
             | st.integers(math.ceil(low) + open_low, int(high)))
    invalid = (st.floats(max_value=low, allow_nan=False).filter(lambda v: not ok(v))
               | st.floats(min_value=high, exclude_min=True, allow_nan=False)
               | st.sampled_from([math.nan, math.inf, -math.inf]) | NOT_NUMBERS | st.none())
    return valid, invalid


def choice(options):
    names = sorted(options)
    return st.sampled_from(names), st.text(max_size=6).filter(lambda v: v not in names) | st.integers() | st.none()


FLAG = (st.booleans(), st.integers(0, 1) | st.text(max_size=4) | st.none() | st.floats())

# What each attack setting must accept and refuse: written out independently of the library's
# rule table, so the two check each other.
SPEC = {
    "iterations": integer(1),
    "latent_iterations": integer(1, optional=True),
    "restarts": integer(1),
    "lr": real(0, open_low=True),
    "latent_lr": real(0, open_low=True),
    "tv": real(0, open_low=False),
    "latent_tv": real(0, open_low=False),
    "latent_norm": real(0, open_low=False),
    "distance": real(0, open_low=False),
    "bn_stats": real(0, open_low=False),
    "top_k": integer(1, optional=True),
    "cost": choice(COSTS),
    "init": choice(INITS),
    "signed": FLAG,
    "latent_signed": FLAG,
    "batched": FLAG,
    "compile": choice(["auto", "on", "off", "graphs"]),
    "label_method": choice(["auto", *labels.available()]),
}
# GIAS splits one budget: its latent stage must be shorter than the total (2000 by default).
GIAS_VALID = {"iterations": st.integers(2, 10**9), "latent_iterations": st.integers(1, 1999) | st.none()}

torch.manual_seed(0)
PRIOR = Prior(DCGANGenerator(latent_dim=4, width=4, channels=1, image_size=32), 4)
SETTINGS = [(name, p) for name in sorted(attacks.available())
            for p in inspect.signature(REGISTRY.get(name).__init__).parameters
            if p not in ("self", "prior")]


def build(name: str, **kw):
    if "prior" in inspect.signature(REGISTRY.get(name).__init__).parameters:
        kw["prior"] = PRIOR
    return attacks.create(name, **kw)


def test_every_attack_setting_has_a_rule_and_a_spec():
    for _, parameter in SETTINGS:
        assert parameter in SPEC
        assert parameter in HYPERPARAMETER_RULES or parameter == "init"


@pytest.mark.parametrize("name,parameter", SETTINGS)
@EXAMPLES
@given(data=st.data())
def test_invalid_attack_setting_is_refused_by_name(name, parameter, data):
    value = data.draw(SPEC[parameter][1], label=parameter)
    with pytest.raises(GradinvError) as err:
        build(name, **{parameter: value})
    message = str(err.value)
    assert message.startswith(f"{name}: ") and parameter in message and "\n" not in message


@pytest.mark.parametrize("name,parameter", SETTINGS)
@EXAMPLES
@given(data=st.data())
def test_valid_attack_setting_is_accepted(name, parameter, data):
    valid = GIAS_VALID.get(parameter, SPEC[parameter][0]) if name == "gias" else SPEC[parameter][0]
    value = data.draw(valid, label=parameter)
    attack = build(name, **{parameter: value})
    assert attack.name == name


def test_gias_budget_split_and_prior_type():
    with pytest.raises(GradinvError, match="latent_iterations .* must be less than iterations"):
        build("gias", iterations=10, latent_iterations=10)
    with pytest.raises(GradinvError, match=r"iterations must be at least 2, not 1"):
        build("gias", iterations=1)  # > 0 but leaves no step for the generator stage
    build("gias", iterations=2)
    for name in ("gi-z", "gias"):
        with pytest.raises(GradinvError, match=f"{name}: prior must be"):
            attacks.create(name, prior=3)


@pytest.mark.parametrize("field", ["labels_known", "num_images_known", "bn_stats_known",
                                   "local_hparams_known"])
@EXAMPLES
@given(value=FLAG[1])
def test_threat_model_switches_must_be_bools(field, value):
    with pytest.raises(GradinvError, match=field):
        ThreatModel(**{field: value})


@pytest.mark.parametrize("field,spec", [("lr", real(0, open_low=True)),
                                        ("local_batch_size", integer(1)), ("epochs", integer(1))])
@EXAMPLES
@given(data=st.data())
def test_fedavg_config_numbers(field, spec, data):
    assert FedAvgConfig(**{field: data.draw(spec[0])})
    with pytest.raises(GradinvError, match=field):
        FedAvgConfig(**{field: data.draw(spec[1])})


@pytest.mark.parametrize("field,spec", [
    ("batch_size", integer(1)), ("epochs", integer(1)), ("max_images", integer(1, optional=True)),
    ("lr", real(0, open_low=True)), ("latent_dim", integer(1, 4096)),
    ("width", integer(1, 4096)),
    ("seed", integer(0, 2**63 - 1)),
])
@EXAMPLES
@given(data=st.data())
def test_prior_training_config_numbers(field, spec, data):
    assert PriorTrainingConfig(**{field: data.draw(spec[0])})
    with pytest.raises(GradinvError, match=field):
        PriorTrainingConfig(**{field: data.draw(spec[1])})


@EXAMPLES
@given(value=NOT_NUMBERS | st.none() | st.floats())
def test_private_batch_needs_tensors(value):
    with pytest.raises(GradinvError, match="images"):
        PrivateBatch(value, torch.tensor([0]))
    with pytest.raises(GradinvError, match="labels"):
        PrivateBatch(torch.rand(1, 1, 4, 4), value)
