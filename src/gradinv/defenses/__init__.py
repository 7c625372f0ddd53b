"""Defenses between the client and what the server observes, one family per file, all reachable
through a small registry; ``DefensePipeline`` applies them in order (client side) and replays
them for an attacker who knows them."""
from . import clip, dpsgd, noise, prune, quantize, soteria  # noqa: F401  (importing registers them)
from .base import (ClientContext, Defense, LocalDefense, UpdateDefense, available, create,
                   parse_spec, register, settings_help)
from .pipeline import DefensePipeline, as_spec

__all__ = ["ClientContext", "Defense", "DefensePipeline", "LocalDefense", "UpdateDefense",
           "as_spec", "available", "create", "parse_spec", "register", "settings_help"]
