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
_NESTED = {"threat": ThreatModel, "fedavg": FedAvgConfig, "prior": PriorSpec}
# Fields holding a path, stored resolved (absolute) in a saved config.toml, so that the file
# repeats the run from any folder.
PATHS = ("record", "data_dir")
SAVED_NOTE = "# written by gradinv; paths are absolute (resolved when the run was made)\n"


def config_from_dict(cls: type, values: dict, *, where: str | None = None) -> object:
    """The inverse of ``config_to_dict``, and the one check of a run file, a sweep's run or
    ``--config``: its shape (``check_shape``), then its values, each error naming the key and
    ``where`` (the file) when given."""
    check_shape(cls, values, where=where)
    values = dict(values)
    for key, kind in _NESTED.items():
        if isinstance(values.get(key), dict):
            table = dict(values[key])
            if "output_range" in table:
                table["output_range"] = tuple(table["output_range"])
            values[key] = _build(kind, table, _at(where), key)
    if "defenses" in values:
        values["defenses"] = tuple(DefenseSpec(d["name"], dict(d.get("settings", {})))
                                   if isinstance(d, dict) else d for d in values["defenses"])
    return _build(cls, values, _at(where))


def check_shape(cls: type, values: object, *, where: str | None = None) -> None:
    """A configuration's shape, before any value is read (``--config`` merges options into
    it): a table of ``cls``'s keys; ``threat``, ``fedavg`` and ``prior`` tables of their own
    keys (a prior may also be a name); ``defenses`` a list of "name:key=value" texts or
    { name = ..., settings = {...} } tables."""
    if not isinstance(values, dict):
        raise GradinvError(f"{_at(where)}a configuration is a table of settings, not "
                           f"{type(values).__name__}")
    _check_keys(values, cls, where, "")
    for key, kind in _NESTED.items():
        value = values.get(key)
        if isinstance(value, dict):
            _check_keys(value, kind, where, f"{key}.")
        elif value is not None and not isinstance(value, kind) and not (
                kind is PriorSpec and isinstance(value, str)):
            raise GradinvError(f"{_at(where)}{key} must be a table ({{ key = value, ... }}), "
                               f"not {type(value).__name__} {value!r}")
    prior = values.get("prior")
    pair = prior.get("output_range", (-1.0, 1.0)) if isinstance(prior, dict) else (-1.0, 1.0)
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise GradinvError(f"{_at(where)}prior.output_range must be a list of two numbers, not "
                           f"{pair!r}")
    if "defenses" in values:
        _check_defenses(values["defenses"], where)


def _at(where: str | None) -> str:
    return "" if where is None else f"{where}: "


def _build(kind: type, values: dict, prefix: str, key: str | None = None) -> object:
    """``kind(**values)``, an error prefixed by ``prefix`` (the file) and ``key`` (the table),
    the key only where the error does not begin with it already ('FedAvg: lr ...')."""
    try:
        return kind(**values)
    except GradinvError as err:
        text = str(err)
        if key is not None and not text.lower().startswith(f"{key.lower()}:"):
            text = f"{key}: {text}"
        raise GradinvError(f"{prefix}{text}") from None


def _check_keys(values: dict, kind: type, where: str | None, prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GradinvError(f"{_at(where)}unknown setting '{prefix}{unknown[0]}'; known: "
                           f"{', '.join(sorted(known))}")


def _check_defenses(value: object, where: str | None) -> None:
    if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
        raise GradinvError(f"{_at(where)}defenses must be a list, e.g. [\"prune:rate=0.9\"] or "
                           f"[{{ name = \"prune\", settings = {{ rate = 0.9 }} }}], not "
                           f"{type(value).__name__} {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            continue  # a spec text (parsed and checked by the defenses) or a DefenseSpec
        _check_keys(item, DefenseSpec, where, f"defenses[{i}].")
        if not isinstance(item.get("name"), str) or not isinstance(item.get("settings", {}),
                                                                  dict):
            raise GradinvError(f"{_at(where)}defenses[{i}] needs a name (text) and settings (a "
                               f"table), not {item!r}")


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file; a missing or malformed file is one clear error."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise GradinvError(f"cannot read {path}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise GradinvError(f"{path} is not valid TOML: {err}") from None


def save_config(config: object, path: str | Path) -> None:
    """Write ``config`` as TOML, its paths (``PATHS``, a prior's weights and file) resolved,
    so that the file repeats the run from any folder (``load_config`` reads it back)."""
    values = config_to_dict(config)
    for key in PATHS:
        if values.get(key) is not None:
            values[key] = str(Path(values[key]).resolve())
    prior = values.get("prior")
    if prior is not None:
        if prior["weights"] is not None:
            prior["weights"] = str(Path(prior["weights"]).resolve())
        if Path(prior["source"]).is_file():  # a generator.pt, not a name or a factory
            prior["source"] = str(Path(prior["source"]).resolve())
    Path(path).write_text(SAVED_NOTE + to_toml(values))


def load_config(cls: type, path: str | Path) -> object:
    """A ``cls`` config from a TOML file written by ``save_config`` (or by hand)."""
    return config_from_dict(cls, read_toml(path), where=str(path))
