"""What the GPU runtimes share: which GPU this is, timing on the device, refusing what does not fit.

torch is imported inside the functions, as everywhere in this package: listing runtimes imports none.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import EffNasError

if TYPE_CHECKING:
    import torch

    from ._base import Forward

__all__ = ["GPU_IDENTITY", "gpu_info", "event_timed", "random_input", "first_call", "out_of_memory_error",
           "one_line"]

# A GPU table holds wherever the same GPU does, whatever the host CPU: its model, and its SM count,
# which also tells a MIG slice or a cut-down variant sold under a similar name from the full chip.
# Memory size is left out: ECC on or off changes what a GDDR card reports, not its speed.
GPU_IDENTITY = ("gpu", "gpu_sms")

# nvidia-smi field -> hardware key. Current clocks are whatever the GPU runs at the moment of the query
# (idle clocks on an idle GPU); the max clocks and the power limit bound what a measurement sees.
_SMI_FIELDS = {"uuid": None, "driver_version": "gpu_driver", "clocks.sm": "gpu_sm_clock_mhz",
               "clocks.mem": "gpu_mem_clock_mhz", "clocks.max.sm": "gpu_max_sm_clock_mhz",
               "clocks.max.mem": "gpu_max_mem_clock_mhz", "power.limit": "gpu_power_limit_w"}


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (an ``EffNasError`` is one line on stderr), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _number(text: str) -> int | float | None:
    """An nvidia-smi value: "[N/A]" and "[Not Supported]" become None."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _same_uuid(theirs: str, ours: str) -> bool:
    """nvidia-smi writes "GPU-8-4-4-4-12 hex", torch the hex groups alone: compare the hex digits."""
    def digits(text: str) -> str:
        return re.sub("[^0-9a-f]", "", text.lower().removeprefix("gpu-"))

    return bool(ours) and digits(theirs) == digits(ours)


def parse_nvidia_smi(stdout: str, uuid: str) -> dict[str, Any] | None:
    """The row of ``--query-gpu=<_SMI_FIELDS>`` output for the GPU with ``uuid`` (as torch writes it):
    the one whose UUID matches, else the only row when there is one."""
    rows = [[cell.strip() for cell in line.split(",")] for line in stdout.splitlines() if line.strip()]
    rows = [row for row in rows if len(row) == len(_SMI_FIELDS)]
    matching = [row for row in rows if _same_uuid(row[0], uuid)]
    row = matching[0] if matching else rows[0] if len(rows) == 1 else None
    if row is None:
        return None
    facts: dict[str, Any] = {}
    for key, value in zip(_SMI_FIELDS.values(), row):
        if key == "gpu_driver":
            facts[key] = value
        elif key:
            facts[key] = _number(value)
    return facts


def _from_nvidia_smi(uuid: str) -> dict[str, Any] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(done.stdout, uuid)


def _from_pynvml(uuid: str) -> dict[str, Any] | None:
    try:
        import pynvml
    except ImportError:
        return None

    def text(value: Any) -> str:  # older pynvml answers bytes
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        pynvml.nvmlInit()
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            matching = [h for h in handles if _same_uuid(text(pynvml.nvmlDeviceGetUUID(h)), uuid)]
            if not matching and len(handles) == 1:
                matching = handles
            if not matching:
                return None
            h = matching[0]
            return {"gpu_driver": text(pynvml.nvmlSystemGetDriverVersion()),
                    "gpu_sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                    "gpu_mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
                    "gpu_max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
                    "gpu_max_mem_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
                    "gpu_power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000}  # mW
        finally:
            pynvml.nvmlShutdown()
    except (pynvml.NVMLError, AttributeError):  # no driver, or a pynvml without one of these calls
        return None


def gpu_info() -> dict[str, Any]:
    """The GPU torch runs on (its current device), as tables record it; every value JSON-ready.
    Without a visible GPU: ``{"gpu": None, "gpu_note": ...}``, so a CPU-only machine can still list it."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None, "gpu_note": "no CUDA GPU visible to torch"}
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    info: dict[str, Any] = {
        "gpu": props.name, "gpu_sms": props.multi_processor_count, "gpu_memory_mib": props.total_memory // 2**20,
        "gpu_compute_capability": f"{props.major}.{props.minor}",
        "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
    }
    uuid = str(getattr(props, "uuid", "") or "")
    for source, read in (("nvidia-smi", _from_nvidia_smi), ("pynvml", _from_pynvml)):
        facts = read(uuid)
        if facts:
            return {**info, **facts, "gpu_facts_from": source}
    return {**info, "gpu_note": "driver version, clocks and power limit unknown: neither nvidia-smi nor pynvml "
                                "answered for this GPU"}


def random_input(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The fixed input every GPU runtime times on, drawn on the GPU in ``dtype`` (a host copy of a
    2048-image batch would take seconds): the same tensor for the same shape, whichever runtime."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)
    return torch.randn(shape, generator=generator, device="cuda", dtype=dtype)


def event_timed(forward: Forward, calls: int, stream: torch.cuda.Stream | None = None) -> list[float]:
    """Milliseconds of each of ``calls`` back-to-back calls, timed by CUDA events on ``stream`` (the
    current one by default), the stream ``forward`` enqueues on. The host never waits in between, as in
    a serving loop, so the GPU runs the calls back to back and each pair of events brackets one call's
    work on the device, not its launch; the host waits once, at the end."""
    import torch

    stream = stream if stream is not None else torch.cuda.current_stream()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(calls)]
    for start, end in events:
        start.record(stream)
        forward()
        end.record(stream)
    stream.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def out_of_memory_error(what: str, batch: int, needed_bytes: float | None, free_bytes: int) -> EffNasError:
    """One line: ``what`` at ``batch`` does not fit the free GPU memory; the batch that would, when
    ``needed_bytes`` (at ``batch``) is known. Memory grows about linearly with the batch."""
    import torch

    _, total = torch.cuda.mem_get_info()
    held = torch.cuda.memory_allocated()
    message = (f"{what} at batch {batch} must fit the GPU's free memory, but it does not "
               f"({free_bytes / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB; this process holds "
               f"{held / 2**30:.1f} GiB in tensors)")
    if needed_bytes:
        fits = int(0.8 * free_bytes * batch / needed_bytes)  # 0.8: allocator fragmentation, workspaces
        if fits >= 1:
            fits = 2 ** int(math.log2(fits))
            return EffNasError(f"{message}; about batch {fits} would fit: pass --batch-size {fits}, "
                               "or free the GPU of other processes")
    return EffNasError(f"{message}; free the GPU of other processes, or use a GPU with more memory")


def _available_to_torch() -> int:
    """Free device memory plus what torch's caching allocator holds unused (torch can reuse that)."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()


def _probe_bytes(probe: Callable[[int], object], batch: int) -> float | None:
    """Peak bytes a call at ``batch`` would take, extrapolated from a small batch (None if even that fails)."""
    import torch

    small = max(1, min(8, batch // 16))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    try:
        probe(small)
        torch.cuda.synchronize()
    except RuntimeError:  # out of memory even so (or the module never made it to the GPU): no estimate
        return None
    return (torch.cuda.max_memory_allocated() - before) * batch / small


def first_call(setup: Callable[[], Forward], probe: Callable[[int], object], batch: int, what: str) -> Forward:
    """``setup()`` (which allocates the input and moves the module) and one call of the forward it
    returns, waited for; the forward. The first call on a shape is where cudnn.benchmark autotunes:
    it belongs in preparing, not in a timed call. Out of GPU memory: ``EffNasError`` naming the batch
    that would fit, estimated with ``probe(n)``, one call at a small batch ``n``."""
    import torch

    forward = None
    try:
        forward = setup()
        forward()
        torch.cuda.synchronize()
        return forward
    except torch.cuda.OutOfMemoryError:
        pass  # handled below, once the traceback (holding the failed call's tensors) is released
    forward = None  # and the input it holds
    torch.cuda.empty_cache()
    needed = _probe_bytes(probe, batch)
    torch.cuda.empty_cache()
    raise out_of_memory_error(what, batch, needed, _available_to_torch())
