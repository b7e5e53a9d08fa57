"""OpenVINO's CPU plugin: Intel's runtime for serving a model on a CPU, fed the same ONNX file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EffNasError
from . import register_runtime
from ._base import Forward, Runtime, RuntimeDefaults
from .onnxruntime_cpu import random_input

if TYPE_CHECKING:
    import torch

_CORE: Any = None


def _shared_core() -> Any:
    """The one ``openvino.Core`` of this process, for the blocks ``prepare`` compiles side by side.

    onnxruntime's per-session pools spin after a run and steal the next session's cores (``_ort.py``).
    The CPU plugin does not: each compiled model gets a streams executor whose threads block when idle,
    its parallel work runs on TBB's process-wide workers, and a freed model's executor is reused by
    the next one compiled with the same settings. (Measured: a block timed beside 20 other compiled
    blocks took what it took alone; the process held 2 threads per live model, not more.) One Core
    keeps the plugin and its CPU topology probe loaded once, not once per block."""
    global _CORE
    if _CORE is None:
        import openvino

        _CORE = openvino.Core()
    return _CORE


def _compile_config(threads: int) -> dict[str, Any]:
    import openvino
    import openvino.properties as props
    import openvino.properties.hint as hint

    return {
        props.inference_num_threads(): threads,
        hint.performance_mode(): hint.PerformanceMode.LATENCY,  # one stream: one request at a time, all threads
        # on a CPU with AVX512-BF16 or AMX the CPU plugin runs float32 models in bf16 unless told not to:
        # a table that records float32 must time float32 on every machine, so the precision is pinned
        hint.inference_precision(): openvino.Type.f32,
    }


def _forward(compiled: Any, input_shape: tuple[int, ...]) -> Forward:
    request = compiled.create_infer_request()
    x = random_input(input_shape)
    # share_inputs: the tensor wraps the fixed array in place, as onnxruntime reads a numpy input, so
    # a call times the network and not a copy of its input; outputs are returned fresh, as there
    return lambda: request.infer({0: x}, share_inputs=True)


@register_runtime
class OpenVinoCPU(Runtime):
    name = "openvino"
    library = "openvino"
    defaults = {"cpu": RuntimeDefaults(batch_size=1, threads=None, dtype="float32")}  # a server: batch 1, every core

    def check_usable(self) -> None:
        if self.config.dtype != "float32":
            raise EffNasError(f"the openvino runtime measures float32 (bf16/f16 inference precision is not supported "
                              f"yet), but dtype {self.config.dtype!r} was asked; use --dtype float32")
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            raise EffNasError(f"the openvino runtime needs the openvino package, which does not import here "
                              f"({exc}); pip install openvino") from None

    def version(self) -> str:
        import openvino

        return openvino.__version__

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        core = _shared_core()
        with tempfile.TemporaryDirectory() as tmp:
            # the compiled model holds the graph in memory: the file can go
            path = self.export(module, Path(tmp) / "m.onnx", input_shape)
            compiled = core.compile_model(str(path), "CPU", _compile_config(self.config.threads))
        return _forward(compiled, input_shape)

    def load_deployed(self, path: Path, input_shape: tuple[int, ...]) -> Forward:
        # as a deployment loads it: its own Core, the file compiled for the CPU with the table's threads
        import openvino

        compiled = openvino.Core().compile_model(str(path), "CPU", _compile_config(self.config.threads))
        return _forward(compiled, input_shape)
