"""The process that times deployed files: ``python -m effvit_nas.latency.deploy_worker CONFIG_JSON``.

It reads one request on stdin (the files with their input shapes, the rule, a seed), starts one
**fresh process per file** (forked from here, or a new interpreter for runtimes that do not fork
cleanly, such as CUDA) that loads the file with the runtime's plain session at the table's threads
and batch and warms it up, then runs the sweeps of ``measure.py`` over them: one short burst of one
process at a time, idle gaps between, every process many times over the window. It prints a
``SWEEP`` line after each sweep and ends with one ``RESULT {json}`` line: each file's burst medians,
or why it failed. Only the standard library and the runtime's own library are imported here (torch
only for the torch runtimes), so the processes it times start clean.

A timed process, on its pipe: ``READY {per-call ms}`` once warm (or ``FAILED reason``), then for each
line ``R N`` from the worker, R untimed calls, N timed back-to-back calls, and one line with those N
calls' milliseconds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import IO, Any

from .measure import SweepProtocol, fast_state_ms, measure_in_sweeps
from .runtimes import Runtime, RuntimeConfig, runtime_class

# run as ``python -m`` (where __name__ is "__main__"), so the fresh-interpreter path names itself in full
WORKER_MODULE = "effvit_nas.latency.deploy_worker"
RESULT, SWEEP, READY, FAILED = "RESULT ", "SWEEP ", "READY ", "FAILED "
STARTING_AT_ONCE = 2  # processes loading and warming up side by side (their timings are not used)
# This worker's ends of the pipes to processes forked earlier: a new fork closes its copies, or an
# earlier process would never see its pipe close (and never exit) while a later one holds it open.
_parent_ends: set[int] = set()


def serve(runtime: Runtime, path: str, shape: tuple[int, ...], warmup_calls: int, requests: IO[str],
          answers: IO[str]) -> None:
    """The timed process's life: load, warm up, answer bursts until the worker closes the pipe."""
    try:
        forward = runtime.load_deployed(path, shape)
        warm = runtime.timed_calls(forward, max(warmup_calls, 1))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the worker as a line
        answers.write(f"{FAILED}{type(exc).__name__}: {exc}\n".replace("\n", " ").rstrip() + "\n")
        answers.flush()
        return
    settled = statistics.median(warm[len(warm) // 2:])  # the settled half of the warm-up
    answers.write(f"{READY}{settled}\n")
    answers.flush()
    for line in requests:
        rewarm, calls = (int(x) for x in line.split())
        if rewarm:
            runtime.timed_calls(forward, rewarm)
        answers.write(json.dumps(runtime.timed_calls(forward, calls)) + "\n")
        answers.flush()


class TimedProcess:
    """One deployed file in a process of its own, driven over two pipes."""

    def __init__(self, runtime: Runtime, path: str, shape: tuple[int, ...], warmup_calls: int) -> None:
        if runtime.forks_cleanly():
            self.to_child, self.from_child, self.pid = _forked(runtime, path, shape, warmup_calls)
            self.process = None
        else:
            request = json.dumps({"path": path, "shape": list(shape), "warmup_calls": warmup_calls})
            self.process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, json.dumps(runtime.config.to_dict()),
                                             "--serve", request], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True, bufsize=1)
            self.to_child, self.from_child, self.pid = self.process.stdin, self.process.stdout, self.process.pid

    def ready(self) -> float | str:
        """Milliseconds per call once warm, or the reason it failed."""
        line = self.from_child.readline()
        if line.startswith(READY):
            return float(line[len(READY):])
        self.close()
        return line[len(FAILED):].strip() if line.startswith(FAILED) else "the process died (out of memory, or killed)"

    def burst(self, rewarm: int, calls: int) -> list[float]:
        try:
            self.to_child.write(f"{rewarm} {calls}\n")
            self.to_child.flush()
            return json.loads(self.from_child.readline())
        except (OSError, ValueError):
            raise RuntimeError("a timed process died while it was being timed (out of memory, or killed)") from None

    def close(self) -> None:
        _parent_ends.difference_update((self.to_child.fileno(), self.from_child.fileno()))
        for pipe in (self.to_child, self.from_child):
            try:
                pipe.close()
            except OSError:
                pass
        if self.process is not None:
            self.process.wait()
        else:
            os.waitpid(self.pid, 0)


def _forked(runtime: Runtime, path: str, shape: tuple[int, ...], warmup_calls: int) -> tuple[IO[str], IO[str], int]:
    down_read, down_write = os.pipe()
    up_read, up_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: serve, then leave without running the parent's cleanup
        for fd in (down_write, up_read, *_parent_ends):
            try:
                os.close(fd)
            except OSError:
                pass
        code = 0
        try:
            with os.fdopen(down_read) as requests, os.fdopen(up_write, "w") as answers:
                serve(runtime, path, shape, warmup_calls, requests, answers)
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(down_read)
    os.close(up_write)
    _parent_ends.update((down_write, up_read))
    return os.fdopen(down_write, "w"), os.fdopen(up_read), pid


def start_processes(runtime: Runtime, files: list[tuple[str, str, tuple[int, ...]]], warmup_calls: int
                    ) -> tuple[dict[str, TimedProcess], dict[str, float], dict[str, str]]:
    """Every file in its warmed-up process, a few starting at once: (processes, ms per call, failures)."""
    processes, per_call, failures = {}, {}, {}
    starting: list[tuple[str, TimedProcess]] = []
    pending = list(files)
    while pending or starting:
        while pending and len(starting) < STARTING_AT_ONCE:
            key, path, shape = pending.pop(0)
            starting.append((key, TimedProcess(runtime, path, shape, warmup_calls)))
        key, process = starting.pop(0)
        answer = process.ready()
        if isinstance(answer, str):
            failures[key] = answer
        else:
            processes[key], per_call[key] = process, answer
    return processes, per_call, failures


def main(argv: list[str]) -> int:
    config = RuntimeConfig(**json.loads(argv[0]))
    runtime = runtime_class(config.runtime, config.device)(config)
    if argv[1:2] == ["--serve"]:  # a timed process started as a new interpreter
        request = json.loads(argv[2])
        serve(runtime, request["path"], tuple(request["shape"]), request["warmup_calls"], sys.stdin, sys.stdout)
        return 0
    runtime.check_usable()
    if runtime.forks_cleanly():
        runtime.preload()  # imported once here, so each forked process starts loading at once
    request = json.loads(sys.stdin.readline())
    protocol = SweepProtocol(**request["protocol"])
    files = [(key, path, tuple(shape)) for key, path, shape in request["files"]]
    processes, per_call, failures = start_processes(runtime, files, protocol.warmup_calls)
    sweeps = 0

    def said(medians: dict[Any, float], seconds: float) -> None:
        nonlocal sweeps
        sweeps += 1
        print(f"{SWEEP}{sweeps} {seconds:.3f}", flush=True)

    settle = request.get("settle")  # the reference's expected figure: the window goes on until it meets it

    def met(bursts: dict[Any, list[float]]) -> bool:
        figure = fast_state_ms(bursts[settle["key"]], protocol.quantile)
        return figure <= (1 + settle["tolerance"]) * settle["ms"]

    try:
        bursts = measure_in_sweeps(processes, per_call, protocol, seed=request["seed"], on_sweep=said,
                                   met=met if settle and settle["key"] in processes else None)
        answer = {"bursts": bursts, "failures": failures, "per_call_ms": per_call}
    except RuntimeError as exc:
        answer = {"error": str(exc)}
    finally:
        for process in processes.values():
            process.close()
    print(RESULT + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
