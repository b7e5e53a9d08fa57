"""A process that exports networks for a ``LatencyMeter`` (``LatencyMeter.export_archs``).

    python -m effvit_nas.latency.export_worker RUNTIME_CONFIG_JSON

reads one request per line on stdin (``{"arch": ..., "path": ...}``), writes that arch with random
weights, BatchNorms folded, as the runtime deploys it, and answers one line: ``EXPORTED {"path": ...}``
or ``EXPORTED {"error": ...}``. An ONNX export is seconds of single-threaded Python (tracing, the ONNX
passes), the largest part of a table adaptation; a few of these processes side by side use every core.
A process of its own, not a fork (a forked child of a process whose OpenMP threads have run can hang)
and not multiprocessing's spawn (which re-runs the caller's main script, and fails for some).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

ANSWER = "EXPORTED "
WORKER_MODULE = "effvit_nas.latency.export_worker"


def main(argv: list[str]) -> int:
    import torch

    from ..arch import Arch
    from ..model import build_model
    from .runtimes import RuntimeConfig, network_input, runtime_class

    torch.set_num_threads(1)  # one export per core
    warnings.simplefilter("ignore")  # the exporter's tracer notes, once per network
    config = RuntimeConfig(**json.loads(argv[0]))
    runtime = runtime_class(config.runtime, config.device)(config)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            arch = Arch.from_dict(request["arch"])
            path = runtime.export(build_model(arch).eval().fuse(), Path(request["path"]),
                                  network_input(arch.resolution, config.batch_size))
            answer = {"path": str(path)}
        except Exception as exc:  # noqa: BLE001 - answer, never leave the meter waiting
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(ANSWER + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
