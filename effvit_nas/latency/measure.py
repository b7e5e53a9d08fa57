"""Timing modules on real runtimes, robustly.

A ``Runtime`` turns an eval-mode ``nn.Module`` and an input shape into a zero-argument callable that
runs one forward pass (and waits for it, on a GPU). ``measure_interleaved`` times several such
callables in interleaved rounds, so that a slow minute on a shared machine hits all of them alike,
and reports the median with its spread. Runtimes are registered by name; an unknown name lists the
valid ones.
"""

from __future__ import annotations

import abc
import logging
import numbers
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EffNasError, UnknownNameError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "RuntimeConfig",
    "Runtime",
    "Timing",
    "RUNTIMES",
    "create_runtime",
    "measure_interleaved",
    "warm_up",
    "calls_within",
    "hardware_info",
    "wait_for_speed",
    "check_at_least",
]

Forward = Callable[[], Any]


def check_at_least(what: str, value: object, minimum: float, *, integer: bool = True) -> None:
    """Refuse a count or limit below ``minimum`` (or not a number at all) with one line.

    Settings are checked where they are defined, not in the CLI, so a library caller gets the same
    refusal, and a 0 cannot fall through an ``or`` somewhere into "use the default"."""
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real))
    if not ok or isinstance(value, bool) or not value >= minimum:  # ``not >=`` also refuses NaN
        raise EffNasError(f"{what} must be {kind} of at least {minimum:g}, but got {value!r}; "
                          f"pass {kind} >= {minimum:g}")


@dataclass(frozen=True)
class RuntimeConfig:
    """How a latency is measured: what a table records and what ``verify`` must reproduce."""

    runtime: str = "onnxruntime"  # onnxruntime | torch
    device: str = "cpu"  # cpu | cuda
    threads: int = 2  # intra-op threads (CPU)
    batch_size: int = 1
    dtype: str = "float32"  # float32 | float16 (torch CUDA autocast, the paper's GPU setting)

    def __post_init__(self) -> None:
        check_at_least("threads (--threads)", self.threads, 1)
        check_at_least("batch size (--batch-size)", self.batch_size, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runtime(abc.ABC):
    """One way to run a model. Subclasses prepare a callable; timing is shared."""

    name: str = ""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        """A callable that runs ``module`` once on a fixed random input of ``input_shape``."""

    @abc.abstractmethod
    def version(self) -> str:
        """The runtime library's version, recorded in tables."""


RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    RUNTIMES[cls.name] = cls
    return cls


def steady_state_allocator() -> None:
    """Keep freed memory in the heap instead of returning it to the OS (glibc only).

    By default glibc maps large buffers fresh and unmaps them on free, so each call of a model with
    big activations pays page faults, and how many depends on the process's history: a fresh
    process times the same network slower than one after some heap churn. A long-running server
    sits in the steady state; this puts every measuring process there from the start (the figures
    that showed it are in docs/LATENCY.md)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve big blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never give the heap top back
    except (OSError, AttributeError):  # not glibc
        pass


def create_runtime(config: RuntimeConfig) -> Runtime:
    steady_state_allocator()
    if config.runtime not in RUNTIMES:
        raise UnknownNameError(f"runtime must be one of {sorted(RUNTIMES)}, but got {config.runtime!r}")
    runtime = RUNTIMES[config.runtime](config)
    if config.device == "cuda" and not runtime_supports_cuda(runtime):
        raise EffNasError(
            f"device 'cuda' needs the torch runtime and a visible CUDA GPU, but runtime is {config.runtime!r} "
            "or no GPU is visible; use --runtime torch on a machine with a GPU, or --device cpu"
        )
    if config.device not in ("cpu", "cuda"):
        raise UnknownNameError(f"device must be one of ['cpu', 'cuda'], but got {config.device!r}")
    return runtime


def runtime_supports_cuda(runtime: Runtime) -> bool:
    if not isinstance(runtime, TorchRuntime):
        return False
    import torch

    return torch.cuda.is_available()


def _random_input(shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


_ORT_POOL_THREADS: int | None = None


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on the process-wide thread pool.

    Every session shares one intra-op pool, sized once per process (by the first caller, or the core
    count). With per-session pools, each session's idle threads spin after a run and steal the cores
    of the next session, which wrecks interleaved timing (a network timed many times slower than
    it runs); disabling spinning instead makes every op pay a thread wake-up. A shared, spinning
    pool is what one deployed model sees, and it times steadily (docs/LATENCY.md has the figures).
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


@register_runtime
class OnnxRuntimeCPU(Runtime):
    """onnxruntime's CPU provider: how a model is usually deployed on a CPU server."""

    name = "onnxruntime"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        from ..export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            return self.prepare_onnx(export_onnx(module, Path(tmp) / "m.onnx", input_shape=input_shape), input_shape)

    def prepare_onnx(self, path: str | os.PathLike, input_shape: tuple[int, ...]) -> Forward:
        """Time an exported file as it is (``verify`` measures the artifact it hands over)."""
        session = onnx_session(path, self.config.threads)
        feeds = {session.get_inputs()[0].name: _random_input(input_shape)}
        return lambda: session.run(None, feeds)


@register_runtime
class TorchRuntime(Runtime):
    """Eager PyTorch under inference mode (the paper's speed test traced with TorchScript, which
    torch now deprecates). On CUDA: fp16 autocast if asked, and a synchronize inside the timed call
    so the time is the GPU's, not the launch's."""

    name = "torch"

    def version(self) -> str:
        import torch

        return torch.__version__

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        import torch

        device = torch.device(self.config.device)
        if device.type == "cpu":
            torch.set_num_threads(self.config.threads)
        x = torch.from_numpy(_random_input(input_shape)).to(device)
        module = module.eval().to(device)
        autocast = device.type == "cuda" and self.config.dtype == "float16"

        def forward() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=autocast):
                module(x)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return forward


@dataclass(frozen=True)
class Timing:
    """Robust summary of one callable's call times, in milliseconds."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    samples: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: 0.05 means the middle half lies within 5%."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def value(self, statistic: str) -> float:
        """The figure a table uses: ``median`` or ``p25`` (first quartile)."""
        return {"median": self.median_ms, "p25": self.p25_ms}[statistic]

    @classmethod
    def of(cls, times_ms: list[float]) -> Timing:
        if len(times_ms) == 1:
            return cls(times_ms[0], times_ms[0], times_ms[0], 1)
        q = statistics.quantiles(times_ms, n=4, method="inclusive")
        return cls(median_ms=statistics.median(times_ms), p25_ms=q[0], p75_ms=q[2], samples=len(times_ms))


def warm_up(forwards: Mapping[Hashable, Forward], calls: int) -> dict[Hashable, float]:
    """Run each callable ``calls`` times untimed; return each one's mean time per call (ms)."""
    clock = time.perf_counter
    per_call = {}
    for key, forward in forwards.items():
        start = clock()
        for _ in range(calls):
            forward()
        per_call[key] = (clock() - start) * 1e3 / max(calls, 1)
    return per_call


def calls_within(per_call_ms: Mapping[Hashable, float], budget_ms: float, max_calls: int) -> dict[Hashable, int]:
    """As many calls per round as fit in ``budget_ms``, between 1 and ``max_calls``: tiny blocks get
    many samples, big networks at large batch a few, and the whole stays fast."""
    return {k: max(1, min(max_calls, int(budget_ms / max(ms, 1e-6)))) for k, ms in per_call_ms.items()}


def measure_interleaved(
    forwards: Mapping[Hashable, Forward],
    *,
    rounds: int = 10,
    calls_per_round: int | Mapping[Hashable, int] = 10,
    warmup_calls: int = 5,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> dict[Hashable, Timing]:
    """Time every callable in ``rounds`` rounds: per round, each callable in turn (order shuffled)
    runs a burst of ``calls_per_round`` timed calls. Returns the median per callable.

    """
    import random

    order = list(forwards)
    warm_up(forwards, warmup_calls)
    calls = calls_per_round if isinstance(calls_per_round, Mapping) else dict.fromkeys(order, calls_per_round)
    samples: dict[Hashable, list[float]] = {key: [] for key in order}
    rng = random.Random(seed)
    clock = time.perf_counter
    for r in range(rounds):
        rng.shuffle(order)
        for key in order:
            forward = forwards[key]
            for _ in range(calls[key]):
                start = clock()
                forward()
                samples[key].append((clock() - start) * 1e3)
        if on_round:
            on_round(r)
    return {key: Timing.of(values) for key, values in samples.items()}


def hardware_info() -> dict[str, Any]:
    """What a table records to say which machine it was measured on."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class MeasureProtocol:
    """How blocks and networks are timed: the same in ``table build``, ``validate`` and ``verify``.

    Everything is timed warm, in bursts, as a deployed network runs back to back (timing a block
    cold, one call among others, adds a per-call cost the network does not pay, which makes block
    sums overshoot the network and far less additive). The speed reference gets the same
    treatment everywhere, so the drift it reports is the machine's, not the context's.
    """

    rounds: int = 5
    max_calls: int = 10
    budget_ms: float = 20.0  # per callable per round: fewer calls for slow ones
    warmup_calls: int = 3
    # The first quartile of all calls, not the median: on a shared machine a neighbour's burst
    # slows a stretch of calls, never speeds any up, so the lower quartile tracks the machine's own
    # speed (what a dedicated deployment sees) and moves less between runs. On a quiet machine the
    # two differ by the spread, a few percent.
    statistic: str = "p25"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE_KEY = "__reference__"


def measure_chunk(
    reference: Forward,
    forwards: Mapping[Hashable, Forward],
    protocol: MeasureProtocol = MeasureProtocol(),
    *,
    seed: int = 0,
) -> tuple[float, dict[Hashable, Timing]]:
    """Time ``forwards`` interleaved with the speed reference; returns (reference ms, timings)."""
    everything = {REFERENCE_KEY: reference, **forwards}
    per_call = warm_up(everything, protocol.warmup_calls)
    calls = calls_within(per_call, protocol.budget_ms, protocol.max_calls)
    timings = measure_interleaved(everything, rounds=protocol.rounds, calls_per_round=calls, warmup_calls=0,
                                  seed=seed)
    return timings.pop(REFERENCE_KEY).value(protocol.statistic), timings


def wait_for_speed(reference: Forward, usual_ms: float, *, max_drift: float, max_wait_s: float,
                   statistic: str = "p25", poll_s: float = 2.0) -> float:
    """Hold off while the machine runs slower than usual (the reference beyond ``max_drift``), for at
    most ``max_wait_s``; returns the seconds waited.

    Shared machines can switch into a slow state that comes and goes, lasting from seconds to
    minutes, whatever the process's own load, and that slows multi-threaded operators unevenly,
    which no rescaling undoes (docs/LATENCY.md, "Drift"). Waiting costs time; measuring through it
    costs accuracy."""
    waited = 0.0
    limit = (1 + max_drift) * usual_ms
    while waited < max_wait_s:
        probe = measure_interleaved({"r": reference}, rounds=1, calls_per_round=15, warmup_calls=3)["r"]
        if probe.value(statistic) <= limit:
            break
        log.info("machine slower than usual (%.3f ms vs %.3f ms); waiting", probe.value(statistic), usual_ms)
        time.sleep(poll_s)
        waited += poll_s
    return waited
