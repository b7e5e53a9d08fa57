"""What this machine's speed does, the facts the latency rule (docs/LATENCY.md) is built on.

    python scripts/probe_machine_states.py [--seconds 180] [--name NAME]      (alone; ~4 minutes)

Three probes, each with plain onnxruntime sessions and a hand-written timing loop (none of effvit-nas's
measuring code, so they can judge it):

1. **states**: one process, the default space's smallest arch at 128 px in two sessions, 2 threads and
   1 thread, bursts of 5 calls alternating for ``--seconds``: how often the 2-thread session runs in its
   fast state, and how the 1-thread one moves meanwhile (the 2-thread slow state is the second core
   answering late, which a 1-thread session never waits for).
2. **switching**: M0 at 224 px in 4 processes taking turns with 40-call bursts and 30 ms idle between
   them: the median time of each call position in a burst (the first calls after another process ran
   are slow: what the rule's re-warm is for).
3. **spinning**: the same 4 processes with no idle gap between bursts against a 30 ms gap: a 2-thread
   pool spins after its run and slows the next process's burst.

Writes docs/results/machine_states_<name>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import save_result

from effvit_nas import Arch, SearchSpace, build_model
from effvit_nas.export import export_onnx

SESSION = """
import json, statistics, sys, time
import numpy as np
import onnxruntime as ort
def session(path, threads, side):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {s.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, side, side), dtype=np.float32)}
    for _ in range(30):
        s.run(None, feeds)
    return lambda: s.run(None, feeds)
def times(run, calls):
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        out.append((time.perf_counter() - start) * 1e3)
    return out
"""

STATES = SESSION + """
path, side, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
runs = {2: session(path, 2, side), 1: session(path, 1, side)}
rows, started = [], time.perf_counter()
while time.perf_counter() - started < seconds:
    for threads, run in runs.items():
        rows.append([round(time.perf_counter() - started, 3), threads, statistics.median(times(run, 5))])
print(json.dumps(rows))
"""

SERVER = SESSION + """
run = session(sys.argv[1], 2, int(sys.argv[2]))
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(times(run, int(line))), flush=True)
"""


def exported(arch: Arch, folder: Path) -> Path:
    return export_onnx(build_model(arch).eval().fuse(), folder / f"{arch.arch_id}.onnx",
                       input_shape=(1, 3, arch.resolution, arch.resolution))


def states(path: Path, side: int, seconds: float) -> dict:
    done = subprocess.run([sys.executable, "-c", STATES, str(path), str(side), str(seconds)], capture_output=True,
                          text=True, check=True)
    rows = json.loads(done.stdout)
    out = {}
    for threads in (2, 1):
        bursts = [m for _, t, m in rows if t == threads]
        fastest = min(bursts)
        out[f"{threads} threads"] = {
            "bursts": len(bursts), "fastest_ms": fastest, "median_ms": statistics.median(bursts),
            "p90_ms": sorted(bursts)[int(0.9 * (len(bursts) - 1))],
            "share_within_10pct_of_fastest": sum(m <= 1.1 * fastest for m in bursts) / len(bursts),
            "per_10s_median_ms": [round(statistics.median([m for s, t, m in rows if t == threads and w <= s < w + 10]),
                                        3) for w in range(0, int(seconds), 10)]}
    return out


def taking_turns(path: Path, side: int, seconds: float, gap_s: float, calls: int = 40, processes: int = 4) -> dict:
    servers = [subprocess.Popen([sys.executable, "-c", SERVER, str(path), str(side)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, bufsize=1) for _ in range(processes)]
    for server in servers:
        assert server.stdout.readline().strip() == "ready"
    by_position: list[list[float]] = [[] for _ in range(calls)]
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for server in servers:
            server.stdin.write(f"{calls}\n")
            server.stdin.flush()
            for i, ms in enumerate(json.loads(server.stdout.readline())):
                by_position[i].append(ms)
            time.sleep(gap_s)
    for server in servers:
        server.stdin.close()
        server.wait()
    medians = [round(statistics.median(p), 3) for p in by_position]
    return {"gap_ms": gap_s * 1e3, "calls_per_burst": calls, "processes": processes,
            "median_ms_by_call_position": medians, "settled_ms": statistics.median(medians[calls // 2:])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the states probe runs")
    parser.add_argument("--name", default="run1")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        small, m0 = SearchSpace.default().smallest(), Arch.preset("m0")
        small_path, m0_path = exported(small, Path(tmp)), exported(m0, Path(tmp))
        result = {"states": {"arch": small.to_dict(), **states(small_path, small.resolution, args.seconds)},
                  "switching": taking_turns(m0_path, m0.resolution, 20, 0.030),
                  "spinning": {"no gap": taking_turns(m0_path, m0.resolution, 20, 0.0),
                               "30 ms gap": taking_turns(m0_path, m0.resolution, 20, 0.030)}}
    two, one = result["states"]["2 threads"], result["states"]["1 threads"]
    print(f"states ({args.seconds:g} s): 2 threads fastest {two['fastest_ms']:.3f} ms, median {two['median_ms']:.3f}, "
          f"{two['share_within_10pct_of_fastest']:.0%} of bursts within 10% of the fastest; 1 thread fastest "
          f"{one['fastest_ms']:.3f}, median {one['median_ms']:.3f}, {one['share_within_10pct_of_fastest']:.0%}")
    positions = result["switching"]["median_ms_by_call_position"]
    print(f"switching: M0 call 1 {positions[0]:.2f} ms, call 5 {positions[4]:.2f}, settled "
          f"{result['switching']['settled_ms']:.2f}")
    spin = result["spinning"]
    print(f"spinning: settled {spin['no gap']['settled_ms']:.2f} ms with no gap, "
          f"{spin['30 ms gap']['settled_ms']:.2f} ms with 30 ms")
    path = save_result(f"machine_states_{args.name}", "python scripts/probe_machine_states.py " + " ".join(argv),
                       result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
