"""PyTorch on a CUDA GPU, the whole forward captured once as a CUDA graph and replayed per call.

Why a second torch runtime: eager PyTorch launches every op from Python, one at a time, and
EfficientViT is made of many small ops (each head of the cascaded attention is a few kernels of its
own). On a fast GPU an eager forward is then bound by the host's launches, not by the GPU: on one
H200 the smallest network of a micro space took about as long at batch 2048 as at 256, and fresh
processes timed it 1.3-1.8x apart (docs/BENCHMARKS.md, "GPU check", run 5). A table of eager figures
there predicts the host's CPU. A deployment that cares for GPU latency captures the forward as a CUDA
graph and replays it (``torch.compile(mode="reduce-overhead")`` does the same): one launch per call,
and the time is the GPU's.

Everything else is the eager runtime's on CUDA (torch_eager.py): the same deployed file (``torch.save``
of the fused module), fp16, cudnn.benchmark, TF32, channels_last, CUDA events over a burst. Capture
follows PyTorch's rules for it: the first call (cuDNN's autotuning, waited for) and a few more on a
side stream before capturing, and a static input the graph reads on every replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import EffNasError
from . import register_runtime
from ._base import Forward, RuntimeDefaults
from .torch_eager import TorchEager

if TYPE_CHECKING:
    import torch

# Calls on a side stream before capture: the allocator and cuBLAS set up their workspaces on the first
# calls of a stream, which must not happen inside a capture. PyTorch's examples use three.
CALLS_BEFORE_CAPTURE = 3
# How close a replay must come to the eager call, relative to the largest output: the same kernels on the
# same input, so only fp16 rounding of a differently ordered reduction may differ.
REPLAY_TOLERANCE = 1e-2


@register_runtime
class TorchCUDAGraph(TorchEager):
    name = "torch-cudagraph"
    defaults = {"cuda": RuntimeDefaults(batch_size=2048, threads=1, dtype="float16")}  # the paper's GPU setting

    def measurement_settings(self) -> dict[str, Any]:
        return {**super().measurement_settings(), "cuda_graph": "the forward captured once, replayed each call"}

    def _ready_cuda(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        import torch

        eager = super()._ready_cuda(module, input_shape)  # on the GPU, cast, its first call autotuned and done
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(CALLS_BEFORE_CAPTURE):
                eager()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = eager()  # the graph writes each replay's result into this same tensor
        _check_replay(graph, output, eager().clone())

        def forward() -> torch.Tensor:  # enqueues one replay and returns, as the eager forward does
            graph.replay()
            return output

        return forward


def _check_replay(graph: torch.cuda.CUDAGraph, replayed: torch.Tensor, expected: torch.Tensor) -> None:
    """Refuse a graph whose replay does not compute what the eager forward computed on the same input."""
    import torch

    graph.replay()
    torch.cuda.synchronize()
    got, want = replayed.float(), expected.float()
    scale = want[torch.isfinite(want)].abs().max().item() if torch.isfinite(want).any() else 1.0
    if not torch.allclose(got, want, rtol=REPLAY_TOLERANCE, atol=REPLAY_TOLERANCE * scale, equal_nan=True):
        worst = (got - want).abs().nan_to_num(float("inf")).max().item()
        raise EffNasError(f"the CUDA graph of this network must compute what the network computes, but its replay "
                          f"differs from an eager call (largest difference {worst:.3g}, outputs up to {scale:.3g}); "
                          "time it with --runtime torch instead (eager), and report this network")
