"""TensorRT on a CUDA GPU: how a network is usually deployed for GPU throughput.

What a deployment ships is the serialized engine (a ``.plan``), built on the GPU model it runs on:
``export`` traces the module to ONNX on the GPU, builds the engine and writes it; ``load_deployed``
deserializes it into an execution context, as a TensorRT server does. Defaults follow the paper's GPU
setting (batch 2048, fp16), the same as the torch CUDA runtime, so the two tables compare.

Precision is in the graph, not in builder flags: the module is traced in the table's dtype, so an fp16
table's ONNX is fp16 throughout (weights, activations, inputs, outputs) and the network is built
strongly typed. TensorRT 11 builds nothing else (its FP16 builder flag is gone), and on TensorRT 10
this runs the same fp16 graph torch's fp16 runtime runs, fp16 in and out: a block timed alone pays no
fp32 <-> fp16 conversions a network would not pay at its boundaries.

Building an engine takes seconds (TensorRT times candidate kernels per layer), so a table of ~1,300
blocks may spend an hour or more building the first time (an estimate, not yet measured). Two
caches cut that. The **timing cache** (one per TensorRT version and GPU model, in the cache folder,
shared by every build) skips timing a layer configuration seen before. The **engine cache** keeps
each engine under a hash of its graph's structure (the weights' values left out: kernels and their
speed do not depend on them), so a resumed or repeated build, and the reference network of every
build and validation, load in milliseconds. Hence ``prepare`` is for timing only: a cached engine
carries the weights of the first module of its structure. ``export`` and ``load_deployed`` never
use the engine cache.

Memory: each prepared forward holds its engine's activation memory and its input and output on the
GPU until it is dropped; before creating one, the free memory is checked against what the engine
declares it needs, and a batch that does not fit is refused with the batch that would.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import EffNasError
from . import register_runtime
from ._base import Forward, Runtime, RuntimeConfig, RuntimeDefaults, cpu_info
from ._cuda import GPU_IDENTITY, event_timed, gpu_info, one_line, out_of_memory_error, random_input

if TYPE_CHECKING:
    import torch


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "effvit-nas" / "trt"


_LOGGER = None


def _logger() -> Any:
    """One logger for every builder and runtime of the process (TensorRT warns when they differ).
    Errors only: a table build makes a thousand engines, and TensorRT's warnings about fp16 weights
    that round to zero are about random weights here, not about the timing."""
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.ERROR)
    return _LOGGER


def graph_structure(onnx_bytes: bytes) -> bytes:
    """The ONNX model with the values of its floating-point initializers (the weights) removed: what
    an engine's kernels and speed depend on. Integer initializers (reshape targets, gather indices)
    keep their values: they decide shapes."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    for tensor in model.graph.initializer:
        if tensor.data_type in floats:
            for field in ("raw_data", "float_data", "double_data", "int32_data"):  # fp16 may sit in int32_data
                tensor.ClearField(field)
    return model.SerializeToString(deterministic=True)


class _Engine:
    """An engine, its execution context and its I/O tensors, released in the order TensorRT needs
    (the context before the engine it came from)."""

    def __init__(self, runtime: Any, engine: Any, context: Any, buffers: dict[str, torch.Tensor]) -> None:
        self.runtime, self.engine, self.context, self.buffers = runtime, engine, context, buffers

    def __del__(self) -> None:
        self.context = None
        self.engine = None


@register_runtime
class TensorRTGPU(Runtime):
    name = "tensorrt"
    library = "tensorrt"
    defaults = {"cuda": RuntimeDefaults(batch_size=2048, threads=1, dtype="float16")}  # the paper's GPU setting
    artifact_suffix = ".plan"
    identity_fields = GPU_IDENTITY
    # Fixed, not "whatever is free": a builder short of memory silently skips the kernels that need
    # more, so engines (and their speed) would depend on what else the process held at the time.
    # 4 GiB is far above what this network's layers ask at batch 2048.
    workspace_bytes: ClassVar[int] = 4 << 30
    optimization_level: ClassVar[int] = 3  # TensorRT's default, what trtexec builds with
    cache_dir: ClassVar[Path | None] = _default_cache_dir()  # None: no engine or timing cache on disk

    def __init__(self, config: RuntimeConfig) -> None:
        super().__init__(config)
        self._stream: torch.cuda.Stream | None = None
        self._trt_runtime: Any = None
        self._timing_cache: Any = None

    # ---------------------------------------------------------------- what this runtime is
    def check_usable(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise EffNasError("runtime 'tensorrt' needs a visible CUDA GPU, but torch sees none; run on a machine "
                              "with an NVIDIA GPU, or use --runtime onnxruntime --device cpu")
        try:
            import tensorrt as trt
        except (ImportError, OSError) as exc:
            raise EffNasError(f"runtime 'tensorrt' needs the tensorrt package, but importing it failed "
                              f"({one_line(exc, 160)}); pip install tensorrt (10 or newer), or use --runtime torch"
                              ) from None
        if int(trt.__version__.split(".")[0]) < 10:
            raise EffNasError(f"runtime 'tensorrt' needs TensorRT 10 or newer, but {trt.__version__} is installed; "
                              "pip install -U tensorrt")
        if self.config.dtype not in ("float16", "float32"):
            raise EffNasError(f"runtime 'tensorrt' measures float16 or float32, but dtype {self.config.dtype!r} "
                              "was asked; use --dtype float16")

    def version(self) -> str:
        import tensorrt

        return tensorrt.__version__

    def hardware(self) -> dict[str, Any]:
        return {**cpu_info(), **gpu_info()}

    def measurement_settings(self) -> dict[str, Any]:
        """The settings that change timings, beyond the config: what a table records."""
        from ...export import DEFAULT_OPSET

        return {"precision": f"strongly typed {self.config.dtype} graph (traced in {self.config.dtype}), "
                             f"{self.config.dtype} input and output",
                "workspace_bytes": self.workspace_bytes, "builder_optimization_level": self.optimization_level,
                "onnx_opset": DEFAULT_OPSET, "timing_cache": "shared by all builds, on disk" if self.cache_dir
                else "shared by the builds of this process",
                "engine_cache": "by graph structure" if self.cache_dir else None,
                "timer": "CUDA events around each call of a back-to-back burst, on the engines' stream"}

    # ---------------------------------------------------------------- the four ways in
    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        """For timing (see the module's note on the engine cache): export, build or fetch, load."""
        onnx_bytes = self._onnx(module, input_shape)
        cached = self._engine_path(onnx_bytes)
        if cached is not None and cached.is_file():
            engine = self._deserialize(cached.read_bytes())
            if engine is not None:  # else a torn or foreign file: built again below
                return self._forward(engine, input_shape)
        plan = self._build(onnx_bytes, input_shape)
        if cached is not None:
            from ..._io import atomic_path

            with atomic_path(cached) as tmp:
                tmp.write_bytes(plan)
        engine = self._deserialize(plan)
        if engine is None:
            raise RuntimeError("TensorRT could not load the engine it has just built (its error is above)")
        return self._forward(engine, input_shape)

    def export(self, module: torch.nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
        from ..._io import atomic_path

        plan = self._build(self._onnx(module, input_shape), input_shape)
        with atomic_path(Path(path)) as tmp:
            tmp.write_bytes(plan)
        return Path(path)

    def load_deployed(self, path: Path, input_shape: tuple[int, ...]) -> Forward:
        engine = self._deserialize(Path(path).read_bytes())
        if engine is None:
            raise EffNasError(f"{path} must be a TensorRT engine built by TensorRT {self.version()} for this GPU "
                              "model, but TensorRT could not load it; export it again on this machine")
        return self._forward(engine, input_shape)

    def timed_calls(self, forward: Forward, calls: int) -> list[float]:
        return event_timed(forward, calls, self._engine_stream())

    # ---------------------------------------------------------------- the steps
    def _dtype(self) -> Any:
        import torch

        return {"float32": torch.float32, "float16": torch.float16}[self.config.dtype]

    def _engine_stream(self) -> torch.cuda.Stream:
        """The stream every engine of this runtime runs on: a stream of its own, since TensorRT
        synchronizes around each call on the legacy default stream."""
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream()
        return self._stream

    def _onnx(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> bytes:
        """``module`` traced to ONNX on the GPU in the table's dtype (a trace runs the module once: on the
        host, a batch of 2048 would take seconds per block). The caller's module is left as it was."""
        import copy

        import torch

        from ...export import DEFAULT_OPSET

        dtype = self._dtype()
        model = None
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation notes
            path = Path(tmp) / "m.onnx"
            try:
                model = copy.deepcopy(module).eval().to(device="cuda", dtype=dtype)
                torch.onnx.export(model, (random_input(input_shape, dtype),), str(path), input_names=["input"],
                                  output_names=["output"], opset_version=DEFAULT_OPSET, dynamo=False)
                return path.read_bytes()
            except torch.cuda.OutOfMemoryError:
                pass  # refused below, once the traceback (holding the trace's tensors) is released
        model = None  # noqa: F841 - the GPU copy goes before the memory is counted
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        raise out_of_memory_error(f"tracing a module on input {tuple(input_shape)}", input_shape[0], None, free)

    def _engine_path(self, onnx_bytes: bytes) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(graph_structure(onnx_bytes))
        digest.update(self._build_identity().encode())
        return Path(self.cache_dir) / f"{digest.hexdigest()[:32]}.plan"

    def _build_identity(self) -> str:
        """What else an engine depends on: TensorRT, the GPU model, how it was built."""
        import torch

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return json.dumps([self.version(), props.name, props.major, props.minor, props.multi_processor_count,
                           self.config.dtype, self.workspace_bytes, self.optimization_level])

    def _timing_cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"timing-{hashlib.sha256(self._build_identity().encode()).hexdigest()[:16]}.cache"

    def _attach_timing_cache(self, config: Any) -> None:
        """One timing cache for every build of this runtime, started from the one on disk."""
        if self._timing_cache is not None and config.set_timing_cache(self._timing_cache, False):
            return
        path = self._timing_cache_path()
        cache = None
        if path is not None and path.is_file():
            try:
                cache = config.create_timing_cache(path.read_bytes())
            except (RuntimeError, TypeError, ValueError):  # a torn file: start afresh
                cache = None
        if cache is None or not config.set_timing_cache(cache, False):  # none yet, or unusable here
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        self._timing_cache = cache

    def _save_timing_cache(self) -> None:
        path = self._timing_cache_path()
        if path is None or self._timing_cache is None:
            return
        from ..._io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_bytes(bytes(self._timing_cache.serialize()))

    def _build(self, onnx_bytes: bytes, input_shape: tuple[int, ...]) -> bytes:
        """The serialized engine of an ONNX graph, built strongly typed (the graph's dtypes)."""
        import tensorrt as trt
        import torch

        # the builder allocates through CUDA, not torch: what torch's allocator caches unused is not free to it
        torch.cuda.empty_cache()
        builder = trt.Builder(_logger())
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, _logger())  # holds the weights: alive until the build is done
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EffNasError(one_line(f"TensorRT's ONNX parser must accept the exported graph, but it reports: "
                                       f"{errors}; report this with your TensorRT version ({trt.__version__})"))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if hasattr(config, "builder_optimization_level"):
            config.builder_optimization_level = self.optimization_level
        self._attach_timing_cache(config)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            free, total = torch.cuda.mem_get_info()
            raise EffNasError(f"TensorRT must build an engine for input {tuple(input_shape)}, but it failed "
                              f"({free / 2**30:.1f} of {total / 2**30:.1f} GiB of GPU memory free; TensorRT's "
                              "error is above); out of memory is the usual cause: try a smaller --batch-size")
        self._save_timing_cache()
        return bytes(plan)

    def _deserialize(self, plan: bytes) -> Any:
        """The engine, or None when the bytes are no engine of this TensorRT and GPU."""
        import tensorrt as trt
        import torch

        if self._trt_runtime is None:
            torch.cuda.init()  # TensorRT then runs in torch's CUDA context, on torch's current device
            self._trt_runtime = trt.Runtime(_logger())
        return self._trt_runtime.deserialize_cuda_engine(plan)

    def _forward(self, engine: Any, input_shape: tuple[int, ...]) -> Forward:
        """An execution context on ``engine`` with its I/O on the GPU: enqueues one call per call."""
        import tensorrt as trt
        import torch

        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        shapes = {n: tuple(engine.get_tensor_shape(n)) for n in names}
        if len(inputs) != 1 or shapes[inputs[0]] != tuple(input_shape):
            raise EffNasError(f"the engine must take one input of shape {tuple(input_shape)}, but it takes "
                              f"{[shapes[n] for n in inputs]} (engines have fixed shapes); export it at this shape")
        if any(engine.get_tensor_dtype(n) not in dtypes for n in names):
            raise EffNasError("the engine's inputs and outputs must be float16 or float32, but they are "
                              f"{[str(engine.get_tensor_dtype(n)) for n in names]}; export it with effnas")
        self._check_fits(engine, names, shapes, {n: dtypes[engine.get_tensor_dtype(n)] for n in names}, input_shape)
        context = engine.create_execution_context()
        if context is None:  # TensorRT has logged why; memory is what fails here
            raise out_of_memory_error(f"a TensorRT engine on input {tuple(input_shape)}", input_shape[0], None,
                                      torch.cuda.mem_get_info()[0])
        stream = self._engine_stream()
        buffers = {}
        for n in names:
            dtype = dtypes[engine.get_tensor_dtype(n)]
            tensor = random_input(shapes[n], dtype) if n in inputs else torch.empty(shapes[n], dtype=dtype,
                                                                                     device="cuda")
            tensor.record_stream(stream)  # torch's allocator must not reuse it while the engine's stream may run
            context.set_tensor_address(n, tensor.data_ptr())
            buffers[n] = tensor
        torch.cuda.synchronize()  # the input is drawn on torch's stream; the engine reads it on its own
        held = _Engine(self._trt_runtime, engine, context, buffers)
        output = next(buffers[n] for n in names if n not in inputs)
        handle = stream.cuda_stream

        def forward() -> torch.Tensor:
            # enqueues and returns; the output is complete once the engine's stream has caught up
            if not held.context.execute_async_v3(handle):
                raise RuntimeError("TensorRT could not enqueue the engine (its error is above)")
            return output

        return forward

    @staticmethod
    def _check_fits(engine: Any, names: list[str], shapes: dict[str, tuple[int, ...]],
                    dtypes: dict[str, torch.dtype], input_shape: tuple[int, ...]) -> None:
        """Refuse, before allocating, an engine whose activations and I/O exceed the free GPU memory."""
        import math

        import torch

        activations = getattr(engine, "device_memory_size_v2", None)
        if activations is None:  # TensorRT before 10.1
            activations = engine.device_memory_size
        io = sum(math.prod(shapes[n]) * torch.finfo(dtypes[n]).bits // 8 for n in names)
        needed = activations + io
        free, _ = torch.cuda.mem_get_info()
        if needed > free:
            torch.cuda.empty_cache()  # TensorRT allocates through CUDA: give it what torch caches unused
            free, _ = torch.cuda.mem_get_info()
        if needed > free:
            raise out_of_memory_error(f"a TensorRT engine on input {tuple(input_shape)}", input_shape[0], needed, free)
