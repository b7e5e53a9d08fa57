"""Argument helpers shared by several commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..arch import PRESETS, Arch
from ..errors import ConfigFileError, EffNasError
from ..space import SearchSpace

if TYPE_CHECKING:
    from ..latency.table import LatencyTable


def load_arch(spec: str) -> Arch:
    """``m0``..``m5`` (a preset) or a path to an architecture YAML."""
    if spec.lower().removeprefix("efficientvit_") in PRESETS:
        return Arch.preset(spec)
    if not Path(spec).exists():
        raise ConfigFileError(
            f"ARCH must be a preset ({', '.join(sorted(PRESETS))}) or an existing YAML file, but got {spec!r}"
        )
    return Arch.from_yaml(spec)


_pending_notes: list[str] = []


def note(line: str) -> None:
    """A remark for stderr, held back until the command's long work is done (``progress_bar``) or the
    command ends (``main``): a command refused on bad input prints its one line and nothing else."""
    if line not in _pending_notes:
        _pending_notes.append(line)


def flush_notes(print_them: bool = True) -> None:
    if print_them:
        for line in _pending_notes:
            sys.stderr.write(f"effnas: note: {line}\n")
    _pending_notes.clear()


def load_table(spec: str) -> LatencyTable:
    """``--target``: a table by name or path. A table that missed its own check when it was made is still
    used, but said so: its predictions may be off by more than the bar it missed."""
    from ..latency.table import LatencyTable

    table = LatencyTable.load(spec)
    if table.check_passed is False:
        note(f"table {table.target} {table.check_status()}; its predictions may be off by more than that bar "
             f"here (effnas table validate --target {table.target} measures how far)")
    return table


def parse_overrides(items: list[str], flag: str = "--set") -> dict[str, str]:
    """``['a=1', 'b-c=x']`` -> ``{'a': '1', 'b_c': 'x'}``."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EffNasError(f"{flag} must look like KEY=VALUE, but got {item!r}")
        changes[key.strip().replace("-", "_")] = value.strip()
    return changes


def load_space(name_or_path: str | None) -> SearchSpace:
    """``--space``: a shipped space's name, a YAML path, or (None) the default space."""
    return SearchSpace.default() if name_or_path is None else SearchSpace.load(name_or_path)


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


class Progress:
    """A tqdm bar on stderr driven by a library's (done, total, what) progress callback.

    Off a terminal (CI logs, ``nohup``) the bar redraws every 10 s instead of 10 times a second."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self.description, self.enabled, self.bar = description, enabled, None

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit="item", dynamic_ncols=True,
                            mininterval=0.1 if sys.stderr.isatty() else 10.0)
        self.bar.total = total
        changed = what != self.bar.postfix
        self.bar.set_postfix_str(what, refresh=False)
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)
        elif changed:  # long work whose count stands still (a measuring window): its stage is the news
            self.bar.refresh()

    def write(self, line: str) -> None:
        """Print a line without tearing the bar."""
        if self.bar is not None:
            self.bar.write(line)
        elif self.enabled:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Progress]:
    progress = Progress(description, enabled)
    try:
        yield progress
    finally:
        progress.close()
    flush_notes()  # the long work done: before the results it qualifies (not after a refusal: that raised)
