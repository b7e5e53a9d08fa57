"""Timing modules on real runtimes, robustly.

A ``Runtime`` turns an eval-mode ``nn.Module`` and an input shape into a zero-argument callable that
runs one forward pass (and waits for it, on a GPU). ``measure_interleaved`` times several such
callables in interleaved rounds, so that a slow minute on a shared machine hits all of them alike,
and reports the median with its spread. Runtimes are registered by name; an unknown name lists the
valid ones.
"""

from __future__ import annotations

import abc
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
    "hardware_info",
]

Forward = Callable[[], Any]


@dataclass(frozen=True)
class RuntimeConfig:
    """How a latency is measured: what a table records and what ``verify`` must reproduce."""

    runtime: str = "onnxruntime"  # onnxruntime | torch
    device: str = "cpu"  # cpu | cuda
    threads: int = 2  # intra-op threads (CPU)
    batch_size: int = 1
    dtype: str = "float32"  # float32 | float16 (torch CUDA autocast, the paper's GPU setting)

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


def create_runtime(config: RuntimeConfig) -> Runtime:
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
    if config.threads < 1 or config.batch_size < 1:
        raise EffNasError(
            f"threads and batch size must be at least 1, but got threads={config.threads}, "
            f"batch_size={config.batch_size}"
        )
    return runtime


def runtime_supports_cuda(runtime: Runtime) -> bool:
    if not isinstance(runtime, TorchRuntime):
        return False
    import torch

    return torch.cuda.is_available()


def _random_input(shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


@register_runtime
class OnnxRuntimeCPU(Runtime):
    """onnxruntime's CPU provider: how a model is usually deployed on a CPU server."""

    name = "onnxruntime"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        import onnxruntime as ort

        from ..export import export_onnx

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(module, Path(tmp) / "m.onnx", input_shape=input_shape)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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

    @classmethod
    def of(cls, times_ms: list[float]) -> Timing:
        q = statistics.quantiles(times_ms, n=4, method="inclusive")
        return cls(median_ms=statistics.median(times_ms), p25_ms=q[0], p75_ms=q[2], samples=len(times_ms))


def measure_interleaved(
    forwards: Mapping[Hashable, Forward],
    *,
    rounds: int = 10,
    calls_per_round: int = 10,
    warmup_calls: int = 5,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> dict[Hashable, Timing]:
    """Time every callable ``rounds x calls_per_round`` times, one round of each in turn (order
    shuffled per round), after ``warmup_calls`` untimed calls each. Returns the median per callable."""
    import random

    order = list(forwards)
    for key in order:
        for _ in range(warmup_calls):
            forwards[key]()
    samples: dict[Hashable, list[float]] = {key: [] for key in order}
    rng = random.Random(seed)
    clock = time.perf_counter
    for r in range(rounds):
        rng.shuffle(order)
        for key in order:
            forward = forwards[key]
            for _ in range(calls_per_round):
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
