"""``LatencyMeter``: the one object that measures for a table build, a validation, ``verify`` and the
benchmark scripts.

It owns the runtime, the speed reference (M0 at the table's batch), the block protocol, waiting for
the machine's usual speed, the deployment rule and chunking. Two ways to measure:

- ``blocks(keys)``: in this process, many blocks side by side (the build's block protocol);
- ``networks(files)``: exported files under the deployment rule, in chunks, each chunk interleaved
  with the reference in the same rounds, so every figure carries the machine speed it was taken at.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..arch import Arch
from ..errors import EffNasError
from .deploy import DeployedTiming, DeploymentRule, DeploymentServer, measure_deployed
from .measure import Forward, MeasureProtocol, Timing, measure_chunk, wait_for_speed
from .runtimes import RuntimeConfig, create_runtime

if TYPE_CHECKING:
    import torch

    from .keys import BlockKey

__all__ = ["LatencyMeter", "DeployedNetwork", "REFERENCE_ARCH", "network_shape"]

REFERENCE_ARCH = "m0"  # the speed reference: fixed, whatever the space
NetworkFile = tuple[Path, tuple[int, ...]]
# Export processes at once on the CPU: each export is single-threaded Python (tracing, the ONNX passes),
# 0.5-4.5 s a network here and the largest part of an adaptation; each holds one network's export in memory.
MAX_EXPORT_WORKERS = 4

def network_shape(arch: Arch, batch: int) -> tuple[int, int, int, int]:
    return (batch, 3, arch.resolution, arch.resolution)


@dataclass(frozen=True)
class DeployedNetwork:
    """One network's deployment-rule timing and the reference's in the same rounds."""

    timing: DeployedTiming
    reference_ms: float  # the median of the reference's rounds beside it
    reference_rounds_ms: tuple[float, ...] = ()


class LatencyMeter:
    """Measures under one runtime config. Use as a context manager: it holds a measuring process and
    a folder of exported files."""

    def __init__(self, config: RuntimeConfig, *, protocol: MeasureProtocol | None = None,
                 rule: DeploymentRule | None = None, chunk_size: int = 8, max_drift: float = 0.10,
                 max_wait_s: float = 120.0) -> None:
        self.config = config
        self.runtime = create_runtime(config)
        self.protocol, self.rule = protocol or MeasureProtocol(), rule or DeploymentRule()
        self.chunk_size, self.max_drift, self.max_wait_s = chunk_size, max_drift, max_wait_s
        self.reference_arch = Arch.preset(REFERENCE_ARCH)
        self.waited_s = 0.0
        self._reference_forward: Forward | None = None
        self._stack = ExitStack()
        self._server: DeploymentServer | None = None
        self._folder: Path | None = None
        self._reference_file: NetworkFile | None = None
        self._exporters: list[tuple[subprocess.Popen[str], Path]] = []

    def __enter__(self) -> LatencyMeter:
        self._folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="effnas-meter-")))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # ------------------------------------------------------------ in this process: the block protocol
    def _reference(self) -> Forward:
        if self._reference_forward is None:
            from ..model import build_model

            arch = self.reference_arch
            self._reference_forward = self.runtime.prepare(build_model(arch).eval().fuse(),
                                                           network_shape(arch, self.config.batch_size))
        return self._reference_forward

    def wait_for_usual_speed(self, usual_ms: float | None) -> None:
        """Hold off (within what is left of ``max_wait_s``) while the in-process reference runs slower
        than ``usual_ms`` by more than ``max_drift``; nothing to compare with while it is None."""
        if usual_ms is None:
            return
        self.waited_s += wait_for_speed(self._reference(), usual_ms, max_drift=self.max_drift,
                                        max_wait_s=max(self.max_wait_s - self.waited_s, 0.0),
                                        statistic=self.protocol.statistic, timed=self.runtime.timed_calls)

    def blocks(self, keys: list[BlockKey]) -> tuple[float, dict[str, Timing], float]:
        """(reference ms, timing per key, seconds): blocks timed beside the reference in this process."""
        from .blocks import build_block

        started = time.perf_counter()
        forwards = {str(k): self.runtime.prepare(build_block(k), k.input_shape()) for k in keys}
        reference_ms, timings = measure_chunk(self._reference(), forwards, self.protocol,
                                              timed=self.runtime.timed_calls)
        return reference_ms, timings, time.perf_counter() - started

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
        closes (idle, they take no CPU from a measurement); callers export a chunk, then time it."""
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
            except BrokenPipeError:  # it died since the last chunk: its answers below say how
                pass
        # every answer read before any error is raised: none is left for the next chunk to read
        answers = {arch.arch_id: _export_answer(exporter, log) for (exporter, log), share in zip(exporters, shares)
                   for arch in share}
        failed = [a for a in archs if "error" in answers[a.arch_id]]
        if failed:
            for exporter, _ in self._exporters:  # dead or out of step: a next chunk starts fresh processes
                exporter.kill()
                with contextlib.suppress(BrokenPipeError):  # requests a dead one never read are dropped
                    exporter.stdin.close()
            self._exporters.clear()
            raise EffNasError(f"every network must export for {self.config.runtime}, but {len(failed)} of this "
                              f"chunk did not (first {failed[0].arch_id}: {answers[failed[0].arch_id]['error']}); "
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

    def _measuring_process(self) -> DeploymentServer:
        if self._server is None:
            if self.config.device == "cuda":
                import torch

                # the fresh measuring processes need the memory this one's allocator keeps from blocks
                torch.cuda.empty_cache()
            self._server = self._stack.enter_context(DeploymentServer(self.config))
        return self._server

    def networks(self, files: Mapping[Hashable, NetworkFile], *, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None
                 ) -> tuple[dict[Hashable, DeployedNetwork], dict[Hashable, str]]:
        """Every file under the deployment rule, ``chunk_size`` at a time beside the reference.
        Returns the timings and, apart, the files that failed to run with the reason."""
        keys = list(files)
        measured: dict[Hashable, DeployedNetwork] = {}
        failures: dict[Hashable, str] = {}
        for start in range(0, len(keys), self.chunk_size):
            chunk = {k: files[k] for k in keys[start:start + self.chunk_size]}
            run = measure_deployed(self._measuring_process(), chunk, self.reference_file(), self.rule,
                                   seed=seed + start)
            measured.update({k: DeployedNetwork(t, run.reference.median_ms, run.reference.rounds_ms)
                             for k, t in run.timings.items()})
            failures.update(run.failures)
            if progress:
                progress(len(measured) + len(failures), len(keys))
        return measured, failures


def _export_answer(exporter: subprocess.Popen[str], log: Path) -> dict:
    """The next answer of an export process; lines that are no answer (a library's print) are skipped."""
    from .export_worker import ANSWER

    for line in exporter.stdout:
        if line.startswith(ANSWER):
            return json.loads(line[len(ANSWER):])
    last = log.read_text().strip().splitlines()[-1:] or ["nothing on stderr"]
    return {"error": f"the export process exited ({exporter.wait()}): {last[0]}"}
