"""What a latency runtime is: one way to run a network, with its own defaults.

A runtime plug-in is one class in one file of this package, registered with ``@register_runtime``.
It declares the devices it runs on and, per device, the batch size, threads and dtype a table gets
when the user does not say (so the CLI holds no policy), and it knows two ways to run a network:

- ``prepare(module, shape)``: in this process, as the table build times thousands of blocks: fast,
  many sessions side by side;
- ``export(module, path, shape)`` then ``load_deployed(path, shape)``: the file a user deploys,
  loaded the plain way a deployment loads it. ``latency/deploy.py`` calls ``load_deployed`` in a
  fresh process per measurement: that is the latency a table predicts (the deployment rule,
  docs/LATENCY.md).

Heavy libraries are imported inside methods: listing the runtimes imports none of them.
"""

from __future__ import annotations

import abc
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..._checks import check_at_least

if TYPE_CHECKING:
    import torch

__all__ = ["Forward", "RuntimeConfig", "RuntimeDefaults", "Runtime", "cpu_info", "host_timed", "steady_state_allocator",
           "network_input"]

Forward = Callable[[], Any]  # one forward pass, finished when it returns (or when ``timed_calls`` waits for it)


def host_timed(forward: Forward, calls: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(calls):
        start = clock()
        forward()
        times.append((clock() - start) * 1e3)
    return times


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


def network_input(resolution: int, batch: int) -> tuple[int, int, int, int]:
    """The input a network of this side is timed with at the table's batch: (B, 3, side, side)."""
    return (batch, 3, resolution, resolution)


@dataclass(frozen=True)
class RuntimeDefaults:
    """What a runtime on one device measures when the user does not say. ``threads=None``: every core."""

    batch_size: int
    threads: int | None
    dtype: str


@dataclass(frozen=True)
class RuntimeConfig:
    """How a latency is measured: what a table records and what ``verify`` must reproduce.
    ``Runtime.config_for`` fills what is not given from the runtime's own defaults."""

    runtime: str = "onnxruntime"
    device: str = "cpu"
    threads: int = 2  # intra-op threads
    batch_size: int = 1
    dtype: str = "float32"  # float32 | float16

    def __post_init__(self) -> None:
        check_at_least("threads (--threads)", self.threads, 1)
        check_at_least("batch size (--batch-size)", self.batch_size, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_info() -> dict[str, Any]:
    """The CPU a measurement ran on: what every table records."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count(), "machine": platform.machine(), "system": platform.system()}


class Runtime(abc.ABC):
    """One way to run a network. Subclass, set the class attributes, implement the four methods."""

    name: ClassVar[str] = ""
    library: ClassVar[str] = ""  # the module it imports: whether it is installed is known without importing it
    defaults: ClassVar[dict[str, RuntimeDefaults]] = {}  # device -> defaults; the devices it runs on
    artifact_suffix: ClassVar[str] = ".onnx"
    # the hardware fields a table's measurements depend on: elsewhere they do not hold
    identity_fields: ClassVar[tuple[str, ...]] = ("cpu_model", "cores", "machine")

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config

    @classmethod
    def installed(cls) -> bool:
        """Whether this runtime's library can be imported here (asked of the import system, not imported)."""
        import importlib.util

        return importlib.util.find_spec(cls.library) is not None

    @classmethod
    def config_for(cls, device: str, *, threads: int | None = None, batch_size: int | None = None,
                   dtype: str | None = None) -> RuntimeConfig:
        """A config with this runtime's defaults on ``device`` where a value is None (a 0 is kept, for
        ``RuntimeConfig`` to refuse)."""
        default = cls.defaults[device]
        default_threads = default.threads if default.threads is not None else os.cpu_count() or 1
        return RuntimeConfig(runtime=cls.name, device=device,
                             threads=default_threads if threads is None else threads,
                             batch_size=default.batch_size if batch_size is None else batch_size,
                             dtype=default.dtype if dtype is None else dtype)

    def measurement_settings(self) -> dict[str, Any]:
        """Process-wide settings that change this runtime's timings (a GPU's autotuning, TF32, memory
        format): a table records them, and a resumed build must find them unchanged."""
        return {}

    def check_usable(self) -> None:
        """Raise ``EffNasError`` with one line when this runtime cannot run here (library missing,
        device not visible, dtype unsupported). The base runtime runs wherever its library imports."""
        return None

    @abc.abstractmethod
    def version(self) -> str:
        """The runtime library's version, recorded in tables."""

    def hardware(self) -> dict[str, Any]:
        """What a table records about the machine (``identity_fields`` must match to use it)."""
        return cpu_info()

    @abc.abstractmethod
    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        """In this process: a callable that runs ``module`` once on a fixed input of ``input_shape``."""

    def export(self, module: torch.nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
        """Write the file a user deploys (default: ONNX at a fixed shape)."""
        from ...export import export_onnx

        return export_onnx(module, path, input_shape=input_shape)

    @abc.abstractmethod
    def load_deployed(self, path: Path, input_shape: tuple[int, ...]) -> Forward:
        """Load ``path`` as a deployment does (a plain session, this config's threads), in this process."""

    def forks_cleanly(self) -> bool:
        """Whether a process that imported this runtime's library may fork a child that then runs it
        (``deploy.py`` forks a fresh child per measurement when it may, else starts a new interpreter).
        A CUDA context does not survive a fork."""
        return self.config.device == "cpu"

    def preload(self) -> None:
        """Import the runtime's library (before ``deploy.py`` forks children that use it): the version
        check does that for every runtime."""
        self.version()

    def timed_calls(self, forward: Forward, calls: int) -> list[float]:
        """Milliseconds of each of ``calls`` back-to-back calls (a GPU runtime times on the device)."""
        return host_timed(forward, calls)
