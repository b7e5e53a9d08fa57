"""Argument helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm bar on stderr driven by a library's (done, total, what) progress callback."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="item", dynamic_ncols=True)
        bar.total = total
        bar.set_postfix_str(what, refresh=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
