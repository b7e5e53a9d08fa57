"""One process or many: the same training code under ``python`` and under ``torchrun``.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process the group is
NCCL on GPUs and gloo on CPUs. Every rank runs the whole loop; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import EffNasError

if TYPE_CHECKING:
    import torch

__all__ = ["Processes", "start_processes", "stop_processes", "pick_device"]


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_sum(self, *values: float) -> list[float]:
        """Sum numbers over the processes (identity for one process)."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_finite(self, value: float) -> bool:
        """Whether ``value`` is finite on every process. Each must stop when one does: a process that
        raised alone would leave the others waiting forever in their next collective call."""
        import math

        finite = math.isfinite(value)
        if not self.distributed:
            return finite
        return self.all_sum(0.0 if finite else 1.0)[0] == 0

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise EffNasError(f"--device must be auto, cpu or cuda, but got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise EffNasError("--device cuda needs a CUDA GPU, but torch sees none; use --device cpu")
    return torch.device(name)


def start_processes(device_name: str) -> Processes:
    """Join the torchrun group if there is one, pin the GPU, and share the CPU cores fairly."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise EffNasError(f"each torchrun process needs its own GPU, but local rank {local_rank} was started "
                              f"on a machine with {torch.cuda.device_count()}; start at most that many "
                              f"processes per node (--nproc-per-node), or use --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, local_rank, device)


def stop_processes(processes: Processes) -> None:
    if processes.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
