"""An audit's configuration: the device, the generator prior, settings addressed by the attack
(or defense) they belong to, and a run's TOML file.

One flat dict shared by every attack of a run silently gave GIAS's generator stage GI's image
learning rate; ``--set gias.lr=1e-4`` says whose setting it is. A run configuration is written
as ``config.toml`` into every run folder and read back with ``--config``, so a run can be
repeated exactly.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checks import GradinvError
from ..types import DefenseSpec, FedAvgConfig, ThreatModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cpu', 'cuda' and 'cuda:N' name a device, and asking for
    a GPU that is not there is a user error. Other torch device types (meta, mps, ...) are
    refused: the attacks are written for CPU and CUDA only."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise GradinvError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and not gpus:
        raise GradinvError(f"device {name!r} requested but no CUDA GPU is available; "
                           "use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise GradinvError(f"device {name!r} requested but there are only {gpus} CUDA GPUs")
    return device


@dataclass(frozen=True)
class PriorSpec:
    """Where an attack's generator comes from (see ``gradinv.priors.load_prior``)."""

    source: str = "fashion-mnist"
    weights: str | None = None
    latent_dim: int | None = None
    output_range: tuple[float, float] = (-1.0, 1.0)


def parse_value(text: str) -> bool | int | float | str:
    """A ``--set`` value: true/false, then an integer, then a float, else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignment(text: str) -> tuple[str, str, object]:
    """``NAME.key=value`` (``gias.lr=1e-4``) as (name, key, value)."""
    target, sep, value = text.partition("=")
    name, dot, key = target.strip().rpartition(".")
    if not sep or not dot or not name or not key.strip() or not value.strip():
        raise GradinvError(f"bad --set {text!r}; expected NAME.key=value, e.g. gias.lr=1e-4")
    return name, key.strip(), parse_value(value.strip())


# -- TOML -------------------------------------------------------------------------------------

def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                               if v is not None) + "}"
    raise GradinvError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def to_toml(values: dict) -> str:
    """``values`` as TOML: scalars and lists first, then one table per dict (None is left out,
    TOML has no null). Enough for run configurations; ``tomllib`` reads it back."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()
             if v is not None and not isinstance(v, dict)]
    for key, table in values.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(key)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()
                      if v is not None]
    return "\n".join(lines) + "\n"


def config_to_dict(config: object) -> dict:
    """A config dataclass as plain values (nested dataclasses as dicts)."""
    return dataclasses.asdict(config)  # type: ignore[call-overload]


# Fields holding a dataclass, and how to rebuild them from a table.
_NESTED = {"threat": ThreatModel, "fedavg": FedAvgConfig}


def config_from_dict(cls: type, values: dict) -> object:
    """The inverse of ``config_to_dict``; an unknown key is refused with its name."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GradinvError(f"unknown setting {unknown[0]!r} in the configuration; known: "
                           f"{', '.join(sorted(known))}")
    values = dict(values)
    for key, kind in _NESTED.items():
        if isinstance(values.get(key), dict):
            values[key] = kind(**values[key])
    if isinstance(values.get("prior"), dict):
        prior = dict(values["prior"])
        if "output_range" in prior:
            prior["output_range"] = tuple(prior["output_range"])
        values["prior"] = PriorSpec(**prior)
    if "defenses" in values:
        values["defenses"] = tuple(DefenseSpec(**d) if isinstance(d, dict) else d
                                   for d in values["defenses"])
    return cls(**values)


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file; a missing or malformed file is one clear error."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise GradinvError(f"cannot read {path}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise GradinvError(f"{path} is not valid TOML: {err}") from None


def save_config(config: object, path: str | Path) -> None:
    """Write ``config`` as TOML (``load_config`` reads it back equal)."""
    Path(path).write_text(to_toml(config_to_dict(config)))


def load_config(cls: type, path: str | Path) -> object:
    """A ``cls`` config from a TOML file written by ``save_config`` (or by hand)."""
    return config_from_dict(cls, read_toml(path))
