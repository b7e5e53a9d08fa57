"""``LatencyMeter``: the one object that measures, for a table build, an adaptation, a validation,
``verify``, a search's finalists and the benchmark scripts.

It owns the runtime, the speed reference (M0 at the table's batch), the exported files and the two
ways to measure, both by the sweeps of ``measure.py`` (the fast-state figure):

- ``blocks(keys)``: in this process, every block's session visited in short bursts over the window
  (the build's block protocol);
- ``networks(files)`` / ``archs(archs)``: exported files under the deployment rule (``deploy.py``),
  each in a process of its own, every window with the reference beside them, whose figure and spread
  say how far the machine moved while they were taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arch import Arch
from ..errors import EffNasError
from .deploy import DeploymentRule, measure_deployed
from .measure import SweepProtocol, Timing, measure_in_sweeps
from .runtimes import Forward, RuntimeConfig, create_runtime, network_input

if TYPE_CHECKING:
    import torch

    from .keys import BlockKey

__all__ = ["LatencyMeter", "NetworkRun", "REFERENCE", "REFERENCE_ARCH", "network_shape", "BLOCK_SWEEPS"]

REFERENCE_ARCH = "m0"  # the speed reference: fixed, whatever the space
REFERENCE = "__reference__"
NetworkFile = tuple[Path, tuple[int, ...]]
# Export processes at once on the CPU: each export is single-threaded Python (tracing, the ONNX passes),
# 0.5-4.5 s a network here and the largest part of an adaptation; each holds one network's export in memory.
MAX_EXPORT_WORKERS = 4
# Blocks in this process: a sweep visits ~1,000 sessions (seconds), so bursts are short and the window
# is covered by the sweeps themselves; every session shares one thread pool, so no gap is needed.
BLOCK_SWEEPS = SweepProtocol(rewarm_ms=1.0, burst_ms=4.0, min_calls=2, max_calls=10, warmup_calls=3, min_bursts=16,
                             min_seconds=60.0)


def network_shape(arch: Arch, batch: int) -> tuple[int, int, int, int]:
    return network_input(arch.resolution, batch)


@dataclass
class NetworkRun:
    """Networks timed under the deployment rule: each one's figure, the reference's in each window they
    were timed in, the files that failed (with why), and the time it took."""

    timings: dict[Hashable, Timing]
    references: list[Timing]
    failures: dict[Hashable, str] = field(default_factory=dict)
    seconds: float = 0.0
    bursts: dict[Hashable, list[float]] = field(default_factory=dict)  # each file's burst medians, as taken

    @property
    def reference_ms(self) -> float:
        return statistics.median(r.latency_ms for r in self.references)

    @property
    def moved(self) -> float:
        """How far the machine moved while these were timed: the reference's p90 over its figure (the
        largest over the windows)."""
        return max(r.moved for r in self.references)

    def machine(self) -> dict[str, Any]:
        """What every result that quotes these figures records beside them."""
        return {"reference_ms": self.reference_ms, "reference_p50_ms": statistics.median(r.p50_ms for r in
                                                                                           self.references),
                "moved": self.moved, "windows": len(self.references), "seconds": round(self.seconds, 1)}


class _InProcess:
    """A prepared forward as a sweep target, timed as its runtime times (a GPU runtime on the device)."""

    def __init__(self, forward: Forward, timed: Callable[[Forward, int], list[float]]) -> None:
        self.forward, self.timed = forward, timed

    def burst(self, rewarm: int, calls: int) -> list[float]:
        if rewarm:
            self.timed(self.forward, rewarm)
        return self.timed(self.forward, calls)


class LatencyMeter:
    """Measures under one runtime config. Use as a context manager: it holds a folder of exported files
    and the processes that export them."""

    def __init__(self, config: RuntimeConfig, *, rule: DeploymentRule | None = None,
                 block_protocol: SweepProtocol | None = None, reference_ms: float | None = None) -> None:
        """``reference_ms``: the reference's figure in the table these measurements are judged against: a
        window goes on until its reference meets it (within 3%), up to the rule's ``max_seconds``."""
        self.config = config
        self.expected_reference_ms = reference_ms
        self.runtime = create_runtime(config)
        self.rule = rule or DeploymentRule()
        self.block_protocol = block_protocol or BLOCK_SWEEPS
        self.reference_arch = Arch.preset(REFERENCE_ARCH)
        self._stack = ExitStack()
        self._folder: Path | None = None
        self._reference_file: NetworkFile | None = None
        self._exporters: list[tuple[subprocess.Popen[str], Path]] = []

    def __enter__(self) -> LatencyMeter:
        self._folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="effnas-meter-")))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # ------------------------------------------------------------ in this process: the block protocol
    def blocks(self, keys: list[BlockKey], *, seed: int = 0, bursts_so_far: Mapping[str, list[float]] | None = None,
               seconds_so_far: float = 0.0, on_sweep: Callable[[dict[str, float], float], None] | None = None,
               prepared: Callable[[int, int], None] | None = None) -> dict[str, list[float]]:
        """Burst medians of every block (and of the reference, under ``REFERENCE``), by the sweeps of
        ``block_protocol`` over all of them at once: each block meets every state of the machine the
        window had. ``bursts_so_far`` / ``seconds_so_far``: an interrupted run's, to go on from.
        ``prepared(done, total)`` while the sessions are made (the slow part before the first sweep)."""
        from ..model import build_model
        from .blocks import build_block

        targets: dict[str, _InProcess] = {}
        reference = self.reference_arch
        forward = self.runtime.prepare(build_model(reference).eval().fuse(),
                                       network_shape(reference, self.config.batch_size))
        targets[REFERENCE] = _InProcess(forward, self.runtime.timed_calls)
        for i, key in enumerate(keys):
            targets[str(key)] = _InProcess(self.runtime.prepare(build_block(key), key.input_shape()),
                                           self.runtime.timed_calls)
            if prepared:
                prepared(i + 1, len(keys))
        per_call = {name: statistics.median(t.burst(0, self.block_protocol.warmup_calls + 1)) for name, t in
                    targets.items()}
        return measure_in_sweeps(targets, per_call, self.block_protocol, seed=seed, bursts_so_far=bursts_so_far,
                                 seconds_so_far=seconds_so_far, on_sweep=on_sweep)

    # ------------------------------------------------------------ deployed files: the deployment rule
    def export(self, name: str, module: torch.nn.Module, shape: tuple[int, ...]) -> NetworkFile:
        """``module`` written as the runtime deploys it, into the meter's folder."""
        import torch

        assert self._folder is not None, "LatencyMeter is used outside its with-block"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # no idle torch threads left spinning beside the measuring process
        try:
            path = self.runtime.export(module, self._folder / f"{name}{self.runtime.artifact_suffix}", shape)
        finally:
            torch.set_num_threads(threads)
        return path, shape

    def export_arch(self, arch: Arch) -> NetworkFile:
        """``arch`` with random weights, BatchNorms folded, as the runtime deploys it (latency does
        not depend on the weights' values)."""
        from ..model import build_model

        return self.export(arch.arch_id, build_model(arch).eval().fuse(), network_shape(arch, self.config.batch_size))

    def reference_file(self) -> NetworkFile:
        if self._reference_file is None:
            self._reference_file = self.export_arch(self.reference_arch)
        return self._reference_file

    def export_archs(self, archs: list[Arch]) -> dict[str, NetworkFile]:
        """Each of ``archs`` as ``export_arch`` writes it, by arch id. For a CPU runtime, on all cores at
        once in export processes (export_worker.py) started with the first call and kept until the meter
        closes (idle, they take no CPU from a measurement)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(cores, MAX_EXPORT_WORKERS, len(archs))
        if self.config.device != "cpu" or workers < 2:  # a GPU runtime's export may build on the GPU: one at a time
            return {a.arch_id: self.export_arch(a) for a in archs}
        exporters = self._exporters_started(workers)
        shares = [archs[i::workers] for i in range(workers)]  # every process gets its requests at once
        for (exporter, _), share in zip(exporters, shares):
            paths = [self._folder / f"{a.arch_id}{self.runtime.artifact_suffix}" for a in share]
            requests = [json.dumps({"arch": a.to_dict(), "path": str(path)}) for a, path in zip(share, paths)]
            try:
                exporter.stdin.write("\n".join(requests) + "\n")
                exporter.stdin.flush()
            except BrokenPipeError:  # it died since the last call: its answers below say how
                pass
        # every answer read before any error is raised: none is left for the next call to read
        answers = {arch.arch_id: _export_answer(exporter, log) for (exporter, log), share in zip(exporters, shares)
                   for arch in share}
        failed = [a for a in archs if "error" in answers[a.arch_id]]
        if failed:
            for exporter, _ in self._exporters:  # dead or out of step: a next call starts fresh processes
                exporter.kill()
                with contextlib.suppress(BrokenPipeError):  # requests a dead one never read are dropped
                    exporter.stdin.close()
            self._exporters.clear()
            raise EffNasError(f"every network must export for {self.config.runtime}, but {len(failed)} of these "
                              f"did not (first {failed[0].arch_id}: {answers[failed[0].arch_id]['error']}); "
                              "export it alone with effnas export to see why")
        return {a.arch_id: (Path(answers[a.arch_id]["path"]), network_shape(a, self.config.batch_size)) for a in archs}

    def _exporters_started(self, workers: int) -> list[tuple[subprocess.Popen[str], Path]]:
        """At least ``workers`` export processes, each with the file its stderr goes to."""
        from .export_worker import WORKER_MODULE

        assert self._folder is not None, "LatencyMeter is used outside its with-block"
        while len(self._exporters) < workers:
            log = self._folder / f"export-{len(self._exporters)}-{time.monotonic_ns()}.log"
            stderr = self._stack.enter_context(log.open("w"))
            process = self._stack.enter_context(subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, json.dumps(self.config.to_dict())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1))
            self._exporters.append((process, log))
        return self._exporters[:workers]

    def networks(self, files: Mapping[Hashable, NetworkFile], *, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None) -> NetworkRun:
        """Every file under the deployment rule beside the reference, all in one window when they fit
        (``rule.max_processes``), else in as few equal windows as hold them."""
        if self.config.device == "cuda":
            import torch

            # the measuring processes need the memory this one's allocator keeps from blocks
            torch.cuda.empty_cache()
        keys = list(files)
        per_window = self.rule.max_processes - 1
        windows = max(1, -(-len(keys) // per_window))
        size = -(-len(keys) // windows) if keys else 0
        timings: dict[Hashable, Timing] = {}
        bursts: dict[Hashable, list[float]] = {}
        references, failures, seconds = [], {}, 0.0
        for w in range(windows):
            chunk = {REFERENCE: self.reference_file(), **{k: files[k] for k in keys[w * size:(w + 1) * size]}}

            def said(sweeps: int, elapsed: float, w: int = w) -> None:
                if progress:
                    progress(w, windows, f"window {w + 1}/{windows}: sweep {sweeps}, {elapsed:.0f} s")

            settle = (REFERENCE, self.expected_reference_ms) if self.expected_reference_ms else None
            run = measure_deployed(self.config, chunk, self.rule, seed=seed + w, progress=said, settle=settle)
            if REFERENCE in run.failures:
                raise EffNasError(f"the reference network must run under {self.config.runtime}, but it failed: "
                                  f"{run.failures[REFERENCE]}")
            references.append(run.timings.pop(REFERENCE))
            run.bursts.pop(REFERENCE)
            timings.update(run.timings)
            bursts.update(run.bursts)
            failures.update(run.failures)
            seconds += run.seconds
        return NetworkRun(timings, references, failures, seconds, bursts)

    def archs(self, archs: Mapping[Hashable, Arch], *, seed: int = 0,
              progress: Callable[[int, int, str], None] | None = None) -> NetworkRun:
        """``archs`` exported (random weights, BatchNorms folded) and timed under the deployment rule in
        one window: what a build's networks, a validation, a search's finalists and the benchmarks time."""
        files = self.export_archs(list(dict.fromkeys(archs.values())))
        return self.networks({key: files[arch.arch_id] for key, arch in archs.items()}, seed=seed,
                             progress=progress)


def _export_answer(exporter: subprocess.Popen[str], log: Path) -> dict:
    """The next answer of an export process; lines that are no answer (a library's print) are skipped."""
    from .export_worker import ANSWER

    for line in exporter.stdout:
        if line.startswith(ANSWER):
            return json.loads(line[len(ANSWER):])
    last = log.read_text().strip().splitlines()[-1:] or ["nothing on stderr"]
    return {"error": f"the export process exited ({exporter.wait()}): {last[0]}"}
