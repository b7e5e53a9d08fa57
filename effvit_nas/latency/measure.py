"""The one way effvit-nas times anything: short bursts in sweeps, and the fast-state figure.

A shared machine (this VM, users' cloud VMs) moves between speeds: here a 2-thread network runs in
a fast state for seconds at a time, and 1.1-1.8x slower for seconds to minutes between them (its
second core answers late, neighbours share its caches), and the slow state does not slow every
network alike. No single call, burst or minute says which state is the machine's. What repeats is
the fast state: the latency a network has when the machine gives it its cores. So every figure here
is **the 2nd percentile of burst medians**: each timed thing is visited in shuffled sweeps over a
window long enough to meet the fast state (a minute by default, longer while a reference has not met
the figure it is known to reach); a visit re-warms it (untimed calls: after another process or session
ran, the first calls are slow, here for up to ~50 ms) and then times one short burst of back-to-back
calls. A burst's median shrugs off a stray slow call; the low quantile picks the bursts the machine
ran fast; no figure depends on which state the machine sat in when it was measured. How far it
moved is kept beside every figure (the p90 burst over the figure).

``measure_in_sweeps`` runs the sweeps over anything with a ``burst(rewarm, calls)`` (a block's session
in this process, or a deployed network in a process of its own: ``deploy.py``); ``Timing`` is the
figure. ``hardware_info`` says which machine it was.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .._checks import check_at_least

__all__ = ["Timing", "SweepProtocol", "BurstTarget", "measure_in_sweeps", "calls_for", "hardware_info",
           "fast_state_ms"]


class BurstTarget(Protocol):
    def burst(self, rewarm: int, calls: int) -> list[float]:
        """Run ``rewarm`` untimed calls, then ``calls`` back-to-back calls; the milliseconds of each of those."""


@dataclass(frozen=True)
class SweepProtocol:
    """How long and how finely things are timed. A target is warmed up once (``warmup_calls``); a visit
    re-warms it for ``rewarm_ms`` (at least ``min_calls``) and times a burst of ``burst_ms`` of back-to-back
    calls (at least ``min_calls``, at most ``max_calls``); every target gets one visit per sweep; sweeps go
    on until each target has ``min_bursts`` and ``min_seconds`` have passed."""

    rewarm_ms: float = 50.0
    burst_ms: float = 25.0
    min_calls: int = 3
    max_calls: int = 20
    warmup_calls: int = 30
    min_bursts: int = 24
    min_seconds: float = 60.0
    # a window that has not yet met the fast state it is told to expect goes on, up to this long
    max_seconds: float = 180.0
    quantile: float = 0.02  # the figure: this quantile of a target's burst medians
    gap_ms: float = 0.0  # idle after each burst (deployed processes: their thread pools stop spinning)

    def __post_init__(self) -> None:
        check_at_least("burst length in ms", self.burst_ms, 0.1, integer=False)
        check_at_least("re-warm length in ms", self.rewarm_ms, 0, integer=False)
        check_at_least("calls per burst", self.min_calls, 1)
        check_at_least("most calls per burst", self.max_calls, self.min_calls)
        check_at_least("warm-up calls", self.warmup_calls, 0)
        check_at_least("bursts per network (--bursts)", self.min_bursts, 3)
        check_at_least("seconds of measuring (--seconds)", self.min_seconds, 0, integer=False)
        check_at_least("longest window in seconds", self.max_seconds, self.min_seconds, integer=False)
        check_at_least("gap between bursts in ms", self.gap_ms, 0, integer=False)
        if not 0 < self.quantile < 0.5:
            raise ValueError(f"quantile must lie in (0, 0.5), but got {self.quantile}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fast_state_ms(burst_medians: list[float], quantile: float) -> float:
    """The figure: the ``quantile`` of the burst medians (linear between order statistics)."""
    ordered = sorted(burst_medians)
    position = quantile * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Timing:
    """One timed thing: its figure (the fast state), the median and p90 of its bursts (the machine as
    it mostly ran), and how many bursts they come from."""

    latency_ms: float
    p50_ms: float
    p90_ms: float
    bursts: int

    @property
    def moved(self) -> float:
        """How far the machine moved under this measurement: p90 of the bursts over the figure."""
        return self.p90_ms / self.latency_ms if self.latency_ms > 0 else 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def of_bursts(cls, burst_medians: list[float], quantile: float) -> Timing:
        return cls(latency_ms=fast_state_ms(burst_medians, quantile),
                   p50_ms=statistics.median(burst_medians), p90_ms=fast_state_ms(burst_medians, 0.9),
                   bursts=len(burst_medians))


def calls_for(per_call_ms: float, protocol: SweepProtocol) -> tuple[int, int]:
    """(re-warm calls, timed calls) of one visit to a target whose call takes ``per_call_ms``."""
    def fitting(ms: float, most: int) -> int:
        return max(protocol.min_calls, min(most, int(ms / max(per_call_ms, 1e-6))))

    rewarm = fitting(protocol.rewarm_ms, 10 * protocol.max_calls) if protocol.rewarm_ms else 0
    return rewarm, fitting(protocol.burst_ms, protocol.max_calls)


def measure_in_sweeps(
    targets: Mapping[Hashable, BurstTarget],
    per_call_ms: Mapping[Hashable, float],
    protocol: SweepProtocol,
    *,
    seed: int = 0,
    bursts_so_far: Mapping[Hashable, list[float]] | None = None,
    seconds_so_far: float = 0.0,
    on_sweep: Callable[[dict[Hashable, float], float], None] | None = None,
    met: Callable[[dict[Hashable, list[float]]], bool] | None = None,
) -> dict[Hashable, list[float]]:
    """Burst medians per target, sweep after sweep in a new shuffled order, until every target has
    ``min_bursts`` and the window has lasted ``min_seconds`` (``bursts_so_far`` and ``seconds_so_far``:
    what an interrupted run took, counted towards both). ``on_sweep(medians of this sweep, seconds it
    took)`` after each sweep, so a caller can store what was taken before the next one starts. ``met(bursts)``:
    whether the window has met what it must (the fast state its reference is known to have); until it
    has, sweeps go on past ``min_seconds``, up to ``max_seconds``."""
    bursts = {key: list((bursts_so_far or {}).get(key, [])) for key in targets}
    if not targets:
        return bursts
    calls = {key: calls_for(per_call_ms[key], protocol) for key in targets}
    rng = random.Random(seed)
    order = list(targets)
    started = time.perf_counter()

    def done() -> bool:
        elapsed = seconds_so_far + time.perf_counter() - started
        if min(len(b) for b in bursts.values()) < protocol.min_bursts or elapsed < protocol.min_seconds:
            return False
        return met is None or elapsed >= protocol.max_seconds or met(bursts)

    while not done():
        rng.shuffle(order)
        sweep_started = time.perf_counter()
        medians = {}
        for key in order:
            medians[key] = statistics.median(targets[key].burst(*calls[key]))
            if protocol.gap_ms:
                time.sleep(protocol.gap_ms / 1000)
        for key, median in medians.items():
            bursts[key].append(median)
        if on_sweep:
            on_sweep(medians, time.perf_counter() - sweep_started)
    return bursts


def hardware_info() -> dict[str, Any]:
    """What a table records to say which machine it was measured on (the CPU; a GPU runtime adds its
    device's facts through ``Runtime.hardware``)."""
    from .runtimes import cpu_info

    return cpu_info()
