"""How a record names its clients' model: a gradinv architecture (``ModelSpec``) or a
description of the user's own module (``ModelDescription``: the names, shapes and dtypes of its
state, never code), and the check that a given model fits it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

from torch import nn

from ..checks import GradinvError
from ..models import build_model


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a model's state dict: name, shape, dtype, and whether it is a parameter
    (part of an update) or a buffer (only broadcast)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    parameter: bool


@dataclass(frozen=True)
class ModelDescription:
    """A client model that is not one of gradinv's architectures (the user's own
    ``nn.Module``), described by its state dict so a record can be read and checked without
    its code. ``source`` says where it came from (``package.module:name``, provenance only:
    gradinv never imports code named in a record); to attack it the user names the factory
    (``--model-factory``), whose model must match ``state``."""

    name: str
    source: str | None
    channels: int
    num_classes: int
    image_size: int
    state: tuple[TensorInfo, ...]

    def describe(self) -> ModelDescription:
        return self

    def build(self) -> nn.Module:
        """Refused: the record holds no code to build the model from."""
        hint = f" (it was recorded from {self.source})" if self.source else ""
        raise GradinvError(f"the record's model is the user's own {self.name}{hint}, which "
                           "gradinv does not import from a record: name the factory that builds "
                           "it with --model-factory package.module:factory (Python: model=)")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state entry's shape, in state-dict order."""
        return {t.name: t.shape for t in self.state}

    def parameter_names(self) -> list[str]:
        return [t.name for t in self.state if t.parameter]

    def to_json(self) -> dict:
        return {"kind": "description", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> ModelDescription:
        values = {k: v for k, v in data.items() if k != "kind"}
        state = tuple(TensorInfo(t["name"], tuple(int(n) for n in t["shape"]), str(t["dtype"]),
                                 bool(t["parameter"])) for t in values.pop("state"))
        return cls(**values, state=state)


def describe_module(model: nn.Module, *, name: str, source: str | None, channels: int,
                    num_classes: int, image_size: int) -> ModelDescription:
    """``model``'s state dict as a ``ModelDescription``."""
    parameters = {n for n, _ in model.named_parameters()}
    state = tuple(TensorInfo(n, tuple(v.shape), str(v.dtype).removeprefix("torch."),
                             n in parameters) for n, v in model.state_dict().items())
    return ModelDescription(name=name, source=source, channels=channels,
                            num_classes=num_classes, image_size=image_size, state=state)


@dataclass(frozen=True)
class ModelSpec:
    """The attacked architecture; its weights come from each round's broadcast. ``width`` is
    ``build_model``'s argument (LeNet's width is fixed and ignores it)."""

    name: str
    width: int
    channels: int
    num_classes: int
    image_size: int
    init_scheme: str

    def build(self) -> nn.Module:
        return build_model(self.name, channels=self.channels, num_classes=self.num_classes,
                           image_size=self.image_size, width=self.width,
                           init_scheme=self.init_scheme)

    def describe(self) -> ModelDescription:
        """The state dict of the architecture (built once to read it)."""
        return describe_module(self.build(), name=self.name, source=None,
                               channels=self.channels, num_classes=self.num_classes,
                               image_size=self.image_size)

    def to_json(self) -> dict:
        return asdict(self)


ModelInfo = Union[ModelSpec, ModelDescription]


def model_from_json(data: dict) -> ModelInfo:
    """A version 1 record names a ModelSpec; version 2 may hold a description instead."""
    if data.get("kind") == "description":
        return ModelDescription.from_json(data)
    return ModelSpec(**data)


def first_difference(want: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]],
                     given: str) -> str | None:
    """The first state entry whose name or shape differs between the record's model (``want``)
    and ``given``'s (e.g. "the given model"), as a sentence; None when all match."""
    for name, shape in want.items():
        if name not in got:
            return f"the record's model has {name} of shape {list(shape)}; {given} has none"
        if got[name] != shape:
            return (f"the record's model has {name} of shape {list(shape)}; {given} has "
                    f"{list(got[name])}")
    extra = next((n for n in got if n not in want), None)
    if extra is not None:
        return f"{given} has {extra} of shape {list(got[extra])}; the record's model has none"
    return None
