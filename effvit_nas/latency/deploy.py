"""Time networks the way they are deployed: the deployment rule (docs/LATENCY.md).

A network's latency is what its deployment measures on the table's machine in that machine's fast
state: the exported file, loaded in a process of its own by a plain session of the table's runtime
at the table's threads and batch, warmed up, then timed in short bursts of back-to-back calls
spread over a window, the figure being the 2nd percentile of the burst medians (``measure.py`` says
why). Every file of a measurement gets its own process, all alive at once and timed in turns (one
burst of one process at a time, idle gaps between so that the last one's threads stop spinning),
so every file meets the same states of the machine over the same window.

This is the truth a table is fitted to (its calibration), checked against (its held-out networks,
``table validate``), and judged by (``verify``, a search's timed finalists, the benchmarks): they all
call ``measure_deployed`` through ``LatencyMeter``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._checks import check_at_least
from ..errors import EffNasError
from .deploy_worker import RESULT, SWEEP, WORKER_MODULE
from .measure import SweepProtocol, Timing
from .runtimes import RuntimeConfig

__all__ = ["DeploymentRule", "DeploymentRun", "measure_deployed", "SETTLE_TOLERANCE"]

# How near a window's reference must come to the table's before a window may end early (within a
# figure's own repeatability, ~1% median here, so a window that met the fast state ends at its minute).
SETTLE_TOLERANCE = 0.03


@dataclass(frozen=True)
class DeploymentRule(SweepProtocol):
    """The sweep protocol for deployed files: 30 warm-up calls; each visit re-warms for 50 ms and times a
    25 ms burst of 3-20 calls, then 30 ms idle (a 2-thread onnxruntime pool spins for a few ms after a
    run, and a spinning pool of the last process slowed the next one's burst up to 2x here); at least
    12 bursts per file over at least a minute; at most ``max_processes`` files at once (each holds its
    network in memory: a build's 68 networks and the reference fit in one window)."""

    min_bursts: int = 12
    gap_ms: float = 30.0
    max_processes: int = 72

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least("processes at once", self.max_processes, 1)

    def sweeps(self) -> SweepProtocol:
        return SweepProtocol(**{k: v for k, v in asdict(self).items() if k != "max_processes"})


@dataclass
class DeploymentRun:
    """One window: each file's figure and burst medians, the files that failed (with why), how long it took."""

    timings: dict[Hashable, Timing]
    bursts: dict[Hashable, list[float]] = field(default_factory=dict)
    failures: dict[Hashable, str] = field(default_factory=dict)
    seconds: float = 0.0


def measure_deployed(
    config: RuntimeConfig,
    files: Mapping[Hashable, tuple[Path, tuple[int, ...]]],
    rule: DeploymentRule,
    *,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
    settle: tuple[Hashable, float] | None = None,
) -> DeploymentRun:
    """Time ``files`` (at most ``rule.max_processes``) under the deployment rule in one window, in a
    measuring process of their own. ``progress(sweeps done, seconds so far)`` after each sweep. A file
    whose process fails (out of memory, a runtime error) is reported with the reason, never given a figure.
    ``settle``: (the reference's key, its figure in the table): the window goes on past ``min_seconds``
    until the reference comes within ``SETTLE_TOLERANCE`` of that figure (the machine showed the fast
    state the table has), up to ``max_seconds``."""
    if len(files) > rule.max_processes:
        raise ValueError(f"at most {rule.max_processes} files at once, but got {len(files)}")
    keys = list(files)
    names = {str(i): key for i, key in enumerate(keys)}  # JSON keys are strings; the caller's may not be
    request = {"files": [[str(i), str(files[k][0]), list(files[k][1])] for i, k in enumerate(keys)],
               "protocol": rule.sweeps().to_dict(), "seed": seed}
    if settle is not None:
        request["settle"] = {"key": str(keys.index(settle[0])), "ms": settle[1], "tolerance": SETTLE_TOLERANCE}
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, json.dumps(config.to_dict())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              bufsize=1)
    try:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
        answer = None
        for line in worker.stdout:
            if line.startswith(SWEEP) and progress:
                progress(int(line.split()[1]), time.perf_counter() - started)
            elif line.startswith(RESULT):
                answer = json.loads(line[len(RESULT):])
        worker.wait()
        if answer is None:
            raise EffNasError(f"the measuring process for {config.runtime} must answer, but it exited "
                              f"({worker.returncode}): {worker.stderr.read()[-500:].strip()}; check that the "
                              "runtime loads here (effnas table runtimes) and rerun")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    if "error" in answer:
        raise EffNasError(f"every network must run to the end of its measurement, but {answer['error']}; rerun "
                          "with fewer networks at once, or a smaller --batch-size")
    bursts = {names[i]: b for i, b in answer["bursts"].items()}
    failures = {names[i]: reason for i, reason in answer["failures"].items()}
    return DeploymentRun({k: Timing.of_bursts(b, rule.quantile) for k, b in bursts.items()}, bursts, failures,
                         time.perf_counter() - started)


def rule_of(record: Mapping[str, Any]) -> DeploymentRule:
    """A rule as a table or a result recorded it."""
    return DeploymentRule(**record)
