"""Time networks the way they are deployed: the deployment rule (docs/LATENCY.md).

A network's latency is what a user's deployment measures: the exported file, loaded in a fresh
process by a plain session of the table's runtime at the table's threads and batch, warmed up, then
the median of many back-to-back calls. ``measure_deployed`` does exactly that for several files in
interleaved rounds (each file once per round, in a new shuffled order, each time in a fresh process)
beside a reference network, whose figure in the same rounds says how fast the machine ran: the
drift is reported beside the raw figure, never hidden in it.

This is the truth a table is fitted to (its calibration), checked against (``table validate``), and
judged by (``verify``). The block protocol of the build (``measure.py``) is fast and differs from it
on purpose; the calibration bridges the two.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._checks import check_at_least
from ..errors import EffNasError
from .deploy_worker import WORKER_MODULE
from .runtimes import RuntimeConfig

__all__ = ["DeploymentRule", "DeployedTiming", "DeploymentRun", "DeploymentServer", "measure_deployed",
           "REFERENCE"]

REFERENCE = "__reference__"


@dataclass(frozen=True)
class DeploymentRule:
    """How a deployed file is timed. Per process: ``warmup_calls`` untimed (the first calls of a fresh
    session pay for allocation and lazy initialisation, which a serving process pays once), then
    ``calls`` timed, fewer for a slow network (as many as fit ``burst_ms``, at least ``min_calls``).
    A file is timed in ``rounds`` processes; its latency is the median of their medians."""

    rounds: int = 3
    warmup_calls: int = 30
    calls: int = 200
    min_calls: int = 20
    burst_ms: float = 600.0

    def __post_init__(self) -> None:
        check_at_least("deployment rounds (--rounds)", self.rounds, 1)
        check_at_least("warm-up calls", self.warmup_calls, 1)
        check_at_least("timed calls", self.calls, 3)
        check_at_least("minimum timed calls", self.min_calls, 3)
        check_at_least("burst length in ms", self.burst_ms, 1, integer=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeployedTiming:
    """One file's figures: per-round medians and their median (the latency), p25 and p90 of the calls,
    and ``relative``: the median over rounds of (this file / the reference in the same round).

    ``relative`` is what survives a machine whose speed moves between rounds: the reference was
    timed seconds from the file in each round, so the ratio carries little of the move, where the
    median of raw rounds carries all of it."""

    median_ms: float
    p25_ms: float
    p90_ms: float
    rounds_ms: tuple[float, ...]
    relative: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rounds_ms": list(self.rounds_ms)}


@dataclass
class DeploymentRun:
    """What one interleaved measurement gives: every file's timing and the reference's in the same rounds."""

    timings: dict[Hashable, DeployedTiming]
    reference: DeployedTiming
    seconds: float = 0.0
    failures: dict[Hashable, str] = field(default_factory=dict)


class DeploymentServer:
    """A measuring process for one runtime config (``deploy_worker.py``): it forks a fresh child per
    measurement. Use as a context manager; the caller's process runs nothing heavy meanwhile."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> DeploymentServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, json.dumps(self.config.to_dict())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

    def measure(self, path: Path, shape: tuple[int, ...], rule: DeploymentRule) -> dict[str, Any]:
        """One fresh-process measurement of ``path``: median, p25, p75, p90 in ms (or ``error``)."""
        from .deploy_worker import RESULT

        process = self._process
        if process is None:
            raise RuntimeError("DeploymentServer is used outside its with-block")
        request = {"path": str(path), "shape": list(shape), **{k: v for k, v in rule.to_dict().items()
                                                                if k != "rounds"}}
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        for line in process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise EffNasError(f"the measuring process for {self.config.runtime} must answer, but it exited "
                          f"({process.wait()}): {process.stderr.read()[-500:].strip()}; check that the runtime "
                          "loads here (effnas table list) and rerun")


def _summarise(results: list[dict[str, Any]], reference_rounds: list[float]) -> DeployedTiming:
    rounds = tuple(r["median_ms"] for r in results)
    return DeployedTiming(median_ms=statistics.median(rounds), p25_ms=statistics.median(r["p25_ms"] for r in results),
                          p90_ms=statistics.median(r["p90_ms"] for r in results), rounds_ms=rounds,
                          relative=statistics.median(r / ref for r, ref in zip(rounds, reference_rounds)))


def measure_deployed(
    server: DeploymentServer,
    files: Mapping[Hashable, tuple[Path, tuple[int, ...]]],
    reference: tuple[Path, tuple[int, ...]],
    rule: DeploymentRule,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DeploymentRun:
    """Time every file and the reference under the deployment rule, interleaved over ``rule.rounds``.

    A file whose measuring process fails (out of memory, a runtime error) is reported in
    ``failures`` with the reason, never given a figure."""
    import time

    started = time.perf_counter()
    everything = {REFERENCE: reference, **files}
    results: dict[Hashable, list[dict[str, Any]]] = {key: [] for key in everything}
    failures: dict[Hashable, str] = {}
    rng = random.Random(seed)
    order = list(everything)
    steps, done = rule.rounds * len(order), 0
    for _ in range(rule.rounds):
        rng.shuffle(order)
        for key in order:
            done += 1
            if key in failures:
                continue
            answer = server.measure(*everything[key], rule)
            if "error" in answer:
                failures[key] = answer["error"]
            else:
                results[key].append(answer)
            if progress:
                progress(done, steps)
    if REFERENCE in failures:
        raise EffNasError(f"the reference network must run under {server.config.runtime}, but it failed: "
                          f"{failures[REFERENCE]}")
    reference_rounds = [r["median_ms"] for r in results[REFERENCE]]
    timings = {key: _summarise(rows, reference_rounds) for key, rows in results.items()
               if key not in failures and key != REFERENCE}
    return DeploymentRun(timings, _summarise(results[REFERENCE], reference_rounds), time.perf_counter() - started,
                         failures)
