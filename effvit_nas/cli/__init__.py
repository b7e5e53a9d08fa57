"""The ``effnas`` command line: ``main`` registers commands; each command module parses its own
arguments and calls one library function."""

from .main import main

__all__ = ["main"]
