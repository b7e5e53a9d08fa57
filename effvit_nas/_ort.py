"""onnxruntime sessions inside effvit-nas's own processes (table builds, export checks).

Kept apart from the latency runtimes so that ``export`` (which checks a file with a session) and
the onnxruntime runtime (which exports blocks to time them) do not import each other.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import EffNasError

__all__ = ["onnx_session", "onnx_pool_threads"]

_ORT_POOL_THREADS: int | None = None


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on the process-wide thread pool.

    Every session shares one intra-op pool, sized once per process (by the first caller, or the core
    count). With per-session pools, each session's idle threads spin after a run and steal the cores
    of the next session, which wrecks interleaved timing of many blocks in one process (a block timed
    many times slower than it runs); disabling spinning instead makes every op pay a thread wake-up.
    This is the block protocol's session; a deployment's plain session is timed apart, in a fresh
    process (``latency/deploy.py``), and the table's calibration maps one onto the other.
    """
    import onnxruntime as ort

    global _ORT_POOL_THREADS
    if _ORT_POOL_THREADS is None:
        _ORT_POOL_THREADS = threads or os.cpu_count() or 1
        ort.set_global_thread_pool_sizes(_ORT_POOL_THREADS, 1)
    elif threads is not None and threads != _ORT_POOL_THREADS:
        raise EffNasError(
            f"onnxruntime's thread pool is shared by every session of a process and must keep its size, "
            f"but it has {_ORT_POOL_THREADS} threads and {threads} were asked; use --threads {_ORT_POOL_THREADS} "
            "or run in a new process"
        )
    options = ort.SessionOptions()
    options.use_per_session_threads = False
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_pool_threads() -> int | None:
    """Size of this process's onnxruntime pool, or None before the first session."""
    return _ORT_POOL_THREADS
