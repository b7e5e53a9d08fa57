"""Timing callables robustly, in this process: the block protocol of a table build.

``measure_interleaved`` times several forward callables (from ``Runtime.prepare``) in interleaved
rounds, so that a slow minute on a shared machine hits all of them alike, and reports the median
with its spread; ``measure_chunk`` adds the speed reference; ``wait_for_speed`` holds off while the
machine runs slow. Whole networks as a deployment runs them are timed by ``deploy.py``.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Timing", "MeasureProtocol", "measure_interleaved", "measure_chunk", "warm_up", "calls_within",
           "hardware_info", "wait_for_speed", "steady_state_allocator", "Forward", "Timer", "host_timed"]

Forward = Callable[[], Any]
Timer = Callable[[Forward, int], list[float]]  # (forward, calls) -> ms per call: ``Runtime.timed_calls``


def host_timed(forward: Forward, calls: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(calls):
        start = clock()
        forward()
        times.append((clock() - start) * 1e3)
    return times


def steady_state_allocator() -> None:
    """Keep freed memory in the heap instead of returning it to the OS (glibc only).

    By default glibc maps large buffers fresh and unmaps them on free, so each call of a model with
    big activations pays page faults, and how many depends on the process's history: a fresh
    process times the same network slower than one after some heap churn. A long-running server
    sits in the steady state; this puts every measuring process there from the start (the figures
    that showed it are in docs/LATENCY.md)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve big blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never give the heap top back
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass(frozen=True)
class Timing:
    """Robust summary of one callable's call times, in milliseconds."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    samples: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: 0.05 means the middle half lies within 5%."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def value(self, statistic: str) -> float:
        """The figure a table uses: ``median`` or ``p25`` (first quartile)."""
        return {"median": self.median_ms, "p25": self.p25_ms}[statistic]

    @classmethod
    def of(cls, times_ms: list[float]) -> Timing:
        if len(times_ms) == 1:
            return cls(times_ms[0], times_ms[0], times_ms[0], 1)
        q = statistics.quantiles(times_ms, n=4, method="inclusive")
        return cls(median_ms=statistics.median(times_ms), p25_ms=q[0], p75_ms=q[2], samples=len(times_ms))


def warm_up(forwards: Mapping[Hashable, Forward], calls: int, timed: Timer = host_timed) -> dict[Hashable, float]:
    """Run each callable ``calls`` times; return each one's mean time per call (ms), timed as the
    runtime times (on a GPU the host clock would see only the launch)."""
    return {key: sum(timed(forward, calls)) / calls if calls else 0.0 for key, forward in forwards.items()}


def calls_within(per_call_ms: Mapping[Hashable, float], budget_ms: float, max_calls: int) -> dict[Hashable, int]:
    """As many calls per round as fit in ``budget_ms``, between 1 and ``max_calls``: tiny blocks get
    many samples, big networks at large batch a few, and the whole stays fast."""
    return {k: max(1, min(max_calls, int(budget_ms / max(ms, 1e-6)))) for k, ms in per_call_ms.items()}


def measure_interleaved(
    forwards: Mapping[Hashable, Forward],
    *,
    rounds: int = 10,
    calls_per_round: int | Mapping[Hashable, int] = 10,
    warmup_calls: int = 5,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
    timed: Timer = host_timed,
) -> dict[Hashable, Timing]:
    """Time every callable in ``rounds`` rounds: per round, each callable in turn (order shuffled)
    runs a burst of ``calls_per_round`` timed calls. Returns the median per callable.

    """
    import random

    order = list(forwards)
    warm_up(forwards, warmup_calls, timed)
    calls = calls_per_round if isinstance(calls_per_round, Mapping) else dict.fromkeys(order, calls_per_round)
    samples: dict[Hashable, list[float]] = {key: [] for key in order}
    rng = random.Random(seed)
    for r in range(rounds):
        rng.shuffle(order)
        for key in order:
            samples[key].extend(timed(forwards[key], calls[key]))
        if on_round:
            on_round(r)
    return {key: Timing.of(values) for key, values in samples.items()}


def hardware_info() -> dict[str, Any]:
    """What a table records to say which machine it was measured on (the CPU; a GPU runtime adds its
    device's facts through ``Runtime.hardware``)."""
    from .runtimes import cpu_info

    return cpu_info()


@dataclass(frozen=True)
class MeasureProtocol:
    """How blocks and networks are timed: the same in ``table build``, ``validate`` and ``verify``.

    Everything is timed warm, in bursts, as a deployed network runs back to back (timing a block
    cold, one call among others, adds a per-call cost the network does not pay, which makes block
    sums overshoot the network and far less additive). The speed reference gets the same
    treatment everywhere, so the drift it reports is the machine's, not the context's.
    """

    rounds: int = 5
    max_calls: int = 10
    budget_ms: float = 20.0  # per callable per round: fewer calls for slow ones
    warmup_calls: int = 3
    # The first quartile of all calls, not the median: on a shared machine a neighbour's burst
    # slows a stretch of calls, never speeds any up, so the lower quartile tracks the machine's own
    # speed (what a dedicated deployment sees) and moves less between runs. On a quiet machine the
    # two differ by the spread, a few percent.
    statistic: str = "p25"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE_KEY = "__reference__"


def measure_chunk(
    reference: Forward,
    forwards: Mapping[Hashable, Forward],
    protocol: MeasureProtocol = MeasureProtocol(),
    *,
    seed: int = 0,
    timed: Timer = host_timed,
) -> tuple[float, dict[Hashable, Timing]]:
    """Time ``forwards`` interleaved with the speed reference; returns (reference ms, timings)."""
    everything = {REFERENCE_KEY: reference, **forwards}
    per_call = warm_up(everything, protocol.warmup_calls, timed)
    calls = calls_within(per_call, protocol.budget_ms, protocol.max_calls)
    timings = measure_interleaved(everything, rounds=protocol.rounds, calls_per_round=calls, warmup_calls=0,
                                  seed=seed, timed=timed)
    return timings.pop(REFERENCE_KEY).value(protocol.statistic), timings


def wait_for_speed(reference: Forward, usual_ms: float, *, max_drift: float, max_wait_s: float,
                   statistic: str = "p25", poll_s: float = 2.0, timed: Timer = host_timed) -> float:
    """Hold off while the machine runs slower than usual (the reference beyond ``max_drift``), for at
    most ``max_wait_s``; returns the seconds waited.

    Shared machines can switch into a slow state that comes and goes, lasting from seconds to
    minutes, whatever the process's own load, and that slows multi-threaded operators unevenly,
    which no rescaling undoes (docs/LATENCY.md, "Drift"). Waiting costs time; measuring through it
    costs accuracy."""
    waited = 0.0
    limit = (1 + max_drift) * usual_ms
    while waited < max_wait_s:
        probe = measure_interleaved({"r": reference}, rounds=1, calls_per_round=15, warmup_calls=3, timed=timed)["r"]
        if probe.value(statistic) <= limit:
            break
        log.info("machine slower than usual (%.3f ms vs %.3f ms); waiting", probe.value(statistic), usual_ms)
        time.sleep(poll_s)
        waited += poll_s
    return waited
