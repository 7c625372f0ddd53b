"""Build a torch module from the user's own code: a generator for ``--prior`` or a client model
for ``--model-factory``, named by an import path ``package.module:factory``.

Only names the user gives are imported (never one read from a record or other shared data), and
whatever the user's code raises becomes one ``GradinvError`` line.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from .checks import GradinvError, one_line


def build_module(factory: str, what: str) -> nn.Module:
    """Import ``package.module:factory`` and call it with no arguments; ``what`` names the
    module in errors ("generator", "model")."""
    module_name, _, attr = factory.partition(":")
    fail = f"cannot build {what} from {factory!r}"
    if not module_name or not attr:
        raise GradinvError(f"{fail}: give it as package.module:factory")
    try:
        make = getattr(importlib.import_module(module_name), attr, None)
    except Exception as err:  # noqa: BLE001  (importing user code can raise anything)
        raise GradinvError(f"{fail}: importing {module_name} failed ({one_line(err)})") from None
    if not callable(make):
        raise GradinvError(f"{fail}: {module_name} has no callable {attr!r}")
    return call_factory(make, fail)


def user_module(given: object, what: str, kinds: str = "an nn.Module") -> nn.Module:
    """The user's module: ``given`` itself, what a factory (a callable, or its
    ``package.module:factory`` import path) builds, or one clear error naming ``kinds``, what
    the caller accepts."""
    if isinstance(given, nn.Module):
        return given
    if isinstance(given, str):
        return build_module(given, what)
    if callable(given):
        return call_factory(given, f"cannot build {what} from {given!r}")
    raise GradinvError(f"{what} must be {kinds}, not {type(given).__name__}")


def call_factory(make: Callable[[], nn.Module], fail: str) -> nn.Module:
    """``make()``, which must take no arguments and return an ``nn.Module``; ``fail`` starts
    every error message."""
    needed = _required_arguments(make)
    if needed:
        raise GradinvError(f"{fail}: the factory needs arguments ({', '.join(needed)}); give one "
                           "that takes none")
    try:
        module = make()
    except Exception as err:  # noqa: BLE001  (user code can raise anything)
        raise GradinvError(f"{fail}: the factory raised {one_line(err)}") from None
    if not isinstance(module, nn.Module):
        raise GradinvError(f"{fail}: the factory returned a {type(module).__name__}, not a "
                           "torch.nn.Module")
    return module


def import_path(obj: object) -> str | None:
    """``package.module:name`` of a class or function defined at module level (what
    ``build_module`` takes); None for one that cannot be imported by name."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not name or module == "__main__" or "<" in name:
        return None
    return f"{module}:{name}"


def _required_arguments(make: Callable) -> list[str]:
    """Parameters ``make`` cannot be called without (none known for builtins)."""
    try:
        parameters = inspect.signature(make).parameters.values()
    except (TypeError, ValueError):
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.default is p.empty and p.kind not in variadic]
