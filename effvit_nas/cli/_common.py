"""Argument helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

from ..arch import PRESETS, Arch
from ..errors import ConfigFileError
from ..space import SearchSpace


def load_arch(spec: str) -> Arch:
    """``m0``..``m5`` (a preset) or a path to an architecture YAML."""
    if spec.lower().removeprefix("efficientvit_") in PRESETS:
        return Arch.preset(spec)
    if not Path(spec).exists():
        raise ConfigFileError(
            f"ARCH must be a preset ({', '.join(sorted(PRESETS))}) or an existing YAML file, but got {spec!r}"
        )
    return Arch.from_yaml(spec)


def load_space(path: str | None) -> SearchSpace:
    return SearchSpace.default() if path is None else SearchSpace.from_yaml(path)


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)
