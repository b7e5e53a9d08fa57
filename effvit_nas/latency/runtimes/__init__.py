"""The latency runtimes: one plug-in class per file of this package, found by name.

``create_runtime(config)`` builds one; an unknown name, or a device the runtime does not run on, is
refused with the valid choices. Every module here is imported when the registry is first read, so a
new runtime is one new file (its library is imported only when it is used).
"""

from __future__ import annotations

import importlib
import pkgutil

from ...errors import EffNasError, UnknownNameError
from ._base import (
    Forward,
    Runtime,
    RuntimeConfig,
    RuntimeDefaults,
    cpu_info,
    host_timed,
    network_input,
    steady_state_allocator,
)

__all__ = ["Forward", "Runtime", "RuntimeConfig", "RuntimeDefaults", "RUNTIMES", "register_runtime", "runtime_class",
           "create_runtime", "cpu_info", "host_timed", "steady_state_allocator", "network_input"]

RUNTIMES: dict[str, type[Runtime]] = {}
_loaded = False


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    RUNTIMES[cls.name] = cls
    return cls


def _load_plugins() -> None:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True


def runtime_class(name: str, device: str | None = None) -> type[Runtime]:
    _load_plugins()
    if name not in RUNTIMES:
        raise UnknownNameError(f"runtime must be one of {sorted(RUNTIMES)}, but got {name!r}")
    cls = RUNTIMES[name]
    if device is not None and device not in cls.defaults:
        others = sorted(n for n, c in RUNTIMES.items() if device in c.defaults)
        raise EffNasError(f"runtime {name!r} runs on device {sorted(cls.defaults)}, but device {device!r} was asked; "
                          f"pick another --device, or a runtime that runs on {device!r}: {others or 'none'}")
    return cls


def create_runtime(config: RuntimeConfig) -> Runtime:
    """The runtime ``config`` names, checked to be usable here (library, device, dtype)."""
    runtime = runtime_class(config.runtime, config.device)(config)
    runtime.check_usable()
    steady_state_allocator()
    return runtime
