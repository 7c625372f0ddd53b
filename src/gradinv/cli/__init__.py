"""The ``gradinv`` command line: one module per command group, the shared options in
``options``; ``main`` is the console script."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
