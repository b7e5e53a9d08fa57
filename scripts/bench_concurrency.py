"""Two processes at once: the main job alone against two copies of it started together.

Run:  python scripts/bench_concurrency.py [--trials 300] [--rounds 2] [--proxy-threads 1]
      (writes docs/results/concurrency-threads<N>-trials<T>.json)

Each round runs ``effnas search --target amd-epyc-2core-ort-b1 --budget 2ms`` once alone, then two
of it at the same moment, in fresh processes (rounds interleave alone and pair, so a change of the
machine's speed hits both alike). The figure is each concurrent search's wall time over the median
alone time of the same run: 2.0 is fair sharing of the cores, the goal is at most 2.5.

``--proxy-threads`` is passed as ``--estimator-arg threads=N``: 1 is the default (effvit_nas/
estimators/_proxies.py), 2 is how the proxies ran before (torch's default on two cores), whose
spinning threads make two processes collapse. Never run beside the test suite or another benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import save_result

TARGET = "amd-epyc-2core-ort-b1"


def search_command(out: Path, trials: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "effvit_nas", "search", "--target", TARGET, "--budget", "2ms",
            "--trials", str(trials), "--estimator-arg", f"threads={threads}", "--out", str(out)]


def run_together(count: int, trials: int, threads: int) -> list[float]:
    """Start ``count`` searches at once; the wall seconds of each."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        procs = [subprocess.Popen(search_command(Path(tmp) / f"s{i}", trials, threads),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(count)]
        seconds = [0.0] * count
        pending = set(range(count))
        while pending:
            for i in list(pending):
                if procs[i].poll() is not None:
                    seconds[i] = time.perf_counter() - started
                    pending.discard(i)
            time.sleep(0.05)
        for proc in procs:
            if proc.returncode != 0:
                raise SystemExit(f"search failed (exit {proc.returncode}): {proc.stderr.read().decode()[-500:]}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--proxy-threads", type=int, default=1)
    args = parser.parse_args()
    alone, together = [], []
    for r in range(args.rounds):
        alone += run_together(1, args.trials, args.proxy_threads)
        pair = run_together(2, args.trials, args.proxy_threads)
        together += pair
        print(f"round {r + 1}: alone {alone[-1]:.1f} s, two at once {pair[0]:.1f} s and {pair[1]:.1f} s", flush=True)
    alone_s = statistics.median(alone)
    ratios = [t / alone_s for t in together]
    figures = {"search": " ".join(search_command(Path("OUT"), args.trials, args.proxy_threads)[1:]),
               "proxy_threads": args.proxy_threads,
               "trials": args.trials, "rounds": args.rounds, "alone_s": alone, "together_s": together,
               "median_alone_s": alone_s, "ratios": ratios, "worst_ratio": max(ratios), "goal": 2.5}
    print(f"median alone {alone_s:.1f} s; two at once: {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"(worst {max(ratios):.2f}x, goal <= 2.5x)")
    command = "python scripts/bench_concurrency.py " + " ".join(sys.argv[1:])
    save_result(f"concurrency-threads{args.proxy_threads}-trials{args.trials}", command, figures)


if __name__ == "__main__":
    main()
