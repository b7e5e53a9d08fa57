"""The process that times deployed files: ``python -m effvit_nas.latency.deploy_worker CONFIG_JSON``.

It imports the runtime's library once, then reads one request per line on stdin (a file, its input
shape, the calls to make) and answers one ``RESULT {json}`` line per request on stdout. Each request
is measured in a **fresh child process** forked for it (a new interpreter for runtimes that do not
fork cleanly, such as CUDA): the child loads the file with the runtime's plain session, warms it
up, times a burst of calls and exits, so no measurement inherits another's heap, threads or caches
(the deployment rule, docs/LATENCY.md). Only the standard library and the runtime's own library are
imported here; torch is not, unless the runtime is torch.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import traceback
from typing import Any

from .runtimes import Runtime, RuntimeConfig, runtime_class

# run as ``python -m`` (where __name__ is "__main__"), so the fresh-interpreter path names itself in full
WORKER_MODULE = "effvit_nas.latency.deploy_worker"

RESULT = "RESULT "


def measure_once(runtime: Runtime, request: dict[str, Any]) -> dict[str, Any]:
    """Load, warm up, time: one deployed file in this process."""
    forward = runtime.load_deployed(request["path"], tuple(request["shape"]))
    warm = runtime.timed_calls(forward, request["warmup_calls"])
    per_call = statistics.median(warm[len(warm) // 2:]) if warm else 1.0  # the settled half of the warm-up
    # as many calls as fit the burst: a slow network gets fewer, but never fewer than min_calls
    calls = max(request["min_calls"], min(request["calls"], int(request["burst_ms"] / max(per_call, 1e-6))))
    times = sorted(runtime.timed_calls(forward, calls))
    q = statistics.quantiles(times, n=20, method="inclusive")
    return {"median_ms": statistics.median(times), "p25_ms": q[4], "p75_ms": q[14], "p90_ms": q[17],
            "calls": calls, "first_call_ms": warm[0] if warm else None}


def _answer(result: dict[str, Any]) -> str:
    return RESULT + json.dumps(result)


def _in_forked_child(runtime: Runtime, request: dict[str, Any]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write one line, leave without running the parent's cleanup
        os.close(read_end)
        try:
            line = _answer(measure_once(runtime, request))
            code = 0
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent as a line
            line, code = _answer({"error": f"{type(exc).__name__}: {exc}"}), 1
        os.write(write_end, (line + "\n").encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        line = pipe.read().strip()
    _, status = os.waitpid(pid, 0)
    if not line:
        return _answer({"error": f"the measuring process died (wait status {status}): out of memory, or killed"})
    return line


def _in_new_interpreter(config: RuntimeConfig, request: dict[str, Any]) -> str:
    done = subprocess.run([sys.executable, "-m", WORKER_MODULE, json.dumps(config.to_dict()), "--once",
                           json.dumps(request)], capture_output=True, text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT)]
    if not lines:
        return _answer({"error": f"the measuring process exited {done.returncode}: {done.stderr.strip()[-500:]}"})
    return lines[-1]


def main(argv: list[str]) -> int:
    config = RuntimeConfig(**json.loads(argv[0]))
    runtime = runtime_class(config.runtime, config.device)(config)
    if argv[1:2] == ["--once"]:
        try:
            print(_answer(measure_once(runtime, json.loads(argv[2]))), flush=True)
            return 0
        except Exception as exc:  # noqa: BLE001
            print(_answer({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return 1
    runtime.check_usable()
    forks = runtime.forks_cleanly()
    if forks:
        runtime.preload()  # imported once here, so each forked child starts measuring at once
    for request_line in sys.stdin:
        try:
            request = json.loads(request_line)
            line = _in_forked_child(runtime, request) if forks else _in_new_interpreter(config, request)
        except Exception:  # noqa: BLE001 - answer, never hang the caller
            line = _answer({"error": traceback.format_exc(limit=1).strip().splitlines()[-1]})
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
