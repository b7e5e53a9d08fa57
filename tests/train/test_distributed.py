"""Where a training process runs. The GPU cases need a machine with GPUs: torch's device count is
replaced here (no GPU on CI); scripts/gpu_check.sh runs the real torchrun refusal on one GPU."""

import pytest
import torch

from effvit_nas.errors import EffNasError
from effvit_nas.train.distributed import start_processes


def test_a_rank_beyond_the_gpu_count_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(EffNasError, match="local rank 1 was started on a machine with 1;.*--device cpu"):
        start_processes("cuda")


def test_cpu_processes_take_no_gpu_whatever_the_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # leaves this test process's thread count alone
    assert start_processes("cpu").device == torch.device("cpu")
