"""Eager PyTorch under inference mode, on the CPU or a CUDA GPU.

The paper's speed tests ran PyTorch (CPU at batch 16 on one thread; GPU at batch 2048 in fp16);
these are the defaults. The deployed file is the whole fused module saved with ``torch.save``,
loaded as a PyTorch service loads it. On CUDA the module and its input are cast to the dtype once
(not autocast around every call, which re-casts every weight each time, and which would time
blocks with fp32 inputs that see fp16 ones inside the network), and calls are timed with CUDA
events over a burst.

On CUDA, what a speed-minded deployment sets is set, the same for blocks, networks and deployed files,
and recorded (``measurement_settings``): cudnn.benchmark, TF32, channels_last. Preparing runs the
first call (where cudnn.benchmark autotunes) and waits for it, so no timed call pays for autotuning,
and it refuses a network that does not fit the GPU with the batch that would. The forward itself
never waits for the GPU: ``timed_calls`` times a burst on the device. What one prepared forward holds
(its input, the module) stays on the GPU until the forward is dropped; a caller preparing many at
batch 2048 drops them between chunks, and nothing more is needed (torch's allocator reuses the memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EffNasError
from . import register_runtime
from ._base import Forward, Runtime, RuntimeDefaults, cpu_info
from ._cuda import GPU_IDENTITY, event_timed, first_call, gpu_info, random_input

if TYPE_CHECKING:
    import torch

# What the CUDA runtime sets before it prepares anything (process-wide torch flags), recorded in tables.
# - cudnn.benchmark: autotune each conv shape once, as a server with fixed shapes does. Blocks and
#   networks of a table then run the algorithms cudnn picks for their shapes, not its heuristic guess.
# - TF32 for float32 matmuls and convs (Ampere and later): what a float32 deployment that cares for speed
#   enables; float16, the default, is unaffected. Set through the legacy flags: torch refuses reading
#   these after the newer fp32_precision API was used, while the legacy flags read either way.
# - channels_last: cudnn's fp16 tensor-core convolutions work in NHWC; an NCHW input costs a transpose
#   around each conv (or a slower NCHW kernel), which is what a deployment tuned for throughput avoids.
#   The network's attention still permutes and returns NCHW (model/attention.py), and a block timed
#   alone gets a channels_last input wherever the network hands it one or not: the calibration takes up
#   that difference, as it does every other block-versus-network one.
CUDA_SETTINGS = {"cudnn_benchmark": True, "tf32_matmul": True, "tf32_cudnn": True, "memory_format": "channels_last",
                 "first_call": "in prepare, waited for (cudnn autotuning)",
                 "timer": "CUDA events around each call of a back-to-back burst"}
CPU_SETTINGS = {"memory_format": "contiguous", "timer": "host clock"}


@register_runtime
class TorchEager(Runtime):
    name = "torch"
    library = "torch"
    defaults = {"cpu": RuntimeDefaults(batch_size=16, threads=1, dtype="float32"),
                "cuda": RuntimeDefaults(batch_size=2048, threads=1, dtype="float16")}
    artifact_suffix = ".pt"

    @property
    def identity_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        """On CUDA the GPU decides the speed, not the host: the same GPU in another server qualifies."""
        return GPU_IDENTITY if self.config.device == "cuda" else Runtime.identity_fields

    def check_usable(self) -> None:
        import torch

        if self.config.device == "cuda" and not torch.cuda.is_available():
            raise EffNasError("device 'cuda' needs a visible CUDA GPU, but torch sees none; run on a machine "
                              "with a GPU, or use --device cpu")
        if self.config.device == "cpu" and self.config.dtype != "float32":
            raise EffNasError(f"the torch CPU runtime measures float32, but dtype {self.config.dtype!r} was asked; "
                              "use --dtype float32")

    def version(self) -> str:
        import torch

        return torch.__version__

    def hardware(self) -> dict[str, Any]:
        return {**cpu_info(), **gpu_info()} if self.config.device == "cuda" else cpu_info()

    def measurement_settings(self) -> dict[str, Any]:
        """The settings that change timings, beyond the config: what a table records."""
        return dict(CUDA_SETTINGS if self.config.device == "cuda" else CPU_SETTINGS)

    def _dtype(self) -> Any:
        import torch

        return {"float32": torch.float32, "float16": torch.float16}[self.config.dtype]

    @staticmethod
    def _configure_cuda() -> None:
        import torch

        torch.backends.cudnn.benchmark = CUDA_SETTINGS["cudnn_benchmark"]
        torch.backends.cuda.matmul.allow_tf32 = CUDA_SETTINGS["tf32_matmul"]
        torch.backends.cudnn.allow_tf32 = CUDA_SETTINGS["tf32_cudnn"]

    def _ready(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        import torch

        device = torch.device(self.config.device)
        if device.type == "cuda":
            return self._ready_cuda(module, input_shape)
        torch.set_num_threads(self.config.threads)
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(input_shape, generator=generator, device=device).to(self._dtype())
        module = module.eval().to(device=device, dtype=self._dtype())

        def forward() -> None:
            with torch.inference_mode():
                module(x)

        return forward

    def _ready_cuda(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        import torch

        self._configure_cuda()
        dtype = self._dtype()
        memory_format = torch.channels_last if len(input_shape) == 4 else torch.contiguous_format

        def setup() -> Forward:
            nonlocal module
            module = module.eval().to(device="cuda", dtype=dtype)
            if memory_format is torch.channels_last:
                module = module.to(memory_format=memory_format)  # the 4-d weights: the convs'
            x = random_input(input_shape, dtype).contiguous(memory_format=memory_format)

            def forward() -> torch.Tensor:  # enqueues the work and returns: no synchronisation inside
                with torch.inference_mode():
                    return module(x)

            return forward

        def probe(batch: int) -> None:
            with torch.inference_mode():
                module(random_input((batch, *input_shape[1:]), dtype).contiguous(memory_format=memory_format))

        what = f"a module on input {tuple(input_shape)} in {self.config.dtype}"
        return first_call(setup, probe, input_shape[0], what)

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        return self._ready(module, input_shape)

    def export(self, module: torch.nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
        import torch

        from ..._io import atomic_path

        with atomic_path(Path(path)) as tmp:
            torch.save(module.eval(), tmp)
        return Path(path)

    def load_deployed(self, path: Path, input_shape: tuple[int, ...]) -> Forward:
        import torch

        return self._ready(torch.load(path, weights_only=False), input_shape)

    def timed_calls(self, forward: Forward, calls: int) -> list[float]:
        if self.config.device != "cuda":
            return super().timed_calls(forward, calls)
        return event_timed(forward, calls)
