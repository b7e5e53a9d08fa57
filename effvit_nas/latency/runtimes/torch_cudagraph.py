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

**Not yet verified on a GPU.** On the one GPU it ran on (an H200, torch 2.11), the replayed output was
NaN where eager computed finite values. The likely cause (found by reading, not yet confirmed there):
the forward kept only the graph and its output, so the module's weights and the static input the graph
reads were freed when preparing returned, and later allocations overwrote them (a graph does not keep
the tensors it reads alive). The forward now holds them. Preparing also compares one replay with one
eager call and refuses, in one line, a graph that computes something else: that catches a capture that
went wrong, not memory freed after preparing returns (the check runs while preparing still holds it),
which only the forward's hold prevents. Its timings on that GPU, taken before the fix, are in
docs/BENCHMARKS.md.
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
        # Captured on the warmed side stream, whose cuBLAS workspace the warm-up calls already made, rather
        # than on torch's shared capture stream, where cuBLAS would allocate it inside the capture.
        with torch.cuda.graph(graph, stream=side):
            output = eager()  # the graph writes each replay's result into this same tensor
        _check_replay(graph, output, eager().clone())

        def forward(_reads: Forward = eager) -> torch.Tensor:  # one replay enqueued, as the eager forward does
            # _reads keeps eager's closure alive: the module's weights and the static input live there, and
            # the graph reads their addresses on every replay without holding them itself.
            graph.replay()
            return output

        return forward


def _check_replay(graph: torch.cuda.CUDAGraph, replayed: torch.Tensor, expected: torch.Tensor) -> None:
    """Refuse a graph whose replay does not compute what the eager forward computed on the same input."""
    import torch

    graph.replay()
    torch.cuda.synchronize()
    if not replay_matches(replayed, expected):
        worst = (replayed.float() - expected.float()).abs().nan_to_num(float("inf")).max().item()  # NaN: inf
        raise EffNasError(f"the CUDA graph of this network must compute what the network computes, but its replay "
                          f"differs from an eager call (largest difference {worst:.3g}); time it with --runtime "
                          "torch instead (eager), and report this network")


def replay_matches(replayed: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether a replay's output is the eager output: non-finite in the same places (random weights may
    overflow fp16 somewhere), the rest within ``REPLAY_TOLERANCE`` of the largest finite output. An eager
    output with nothing finite leaves nothing to compare: no match."""
    import torch

    got, want = replayed.float(), expected.float()
    finite = torch.isfinite(want)
    if not finite.any() or not torch.equal(torch.isfinite(got), finite):
        return False
    scale = want[finite].abs().max().item()
    return torch.allclose(got[finite], want[finite], rtol=REPLAY_TOLERANCE, atol=REPLAY_TOLERANCE * scale)
