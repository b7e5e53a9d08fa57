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


def _report_finite(rank: int, port: int, values: list[list[float]], results) -> None:
    import os

    import torch.distributed as dist

    from effvit_nas.train.distributed import Processes

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=len(values))
    try:
        procs = Processes(rank, len(values), rank, torch.device("cpu"))
        results.put((rank, [procs.all_finite(value) for value in values[rank]]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns processes
def test_every_rank_stops_when_one_rank_s_loss_is_not_finite():
    """Two real gloo processes, three steps: a rank whose own loss is finite must still learn that
    another's is not, or it would wait forever in its next all-reduce while the other raised."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    steps = [[1.0, float("inf"), 1.0], [float("nan"), 2.0, 2.0]]  # rank -> its loss at each step
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_report_finite, args=(rank, port, steps, results)) for rank in range(2)]
    for process in processes:
        process.start()
    try:
        answers = dict(results.get(timeout=120) for _ in processes)
        for process in processes:
            process.join(timeout=60)
    finally:
        for process in processes:
            process.kill()
    assert answers == {0: [False, False, True], 1: [False, False, True]}
    assert [process.exitcode for process in processes] == [0, 0]


def test_one_process_shuffles_plainly_where_the_paper_recipe_repeats_augmentation():
    """Repeated augmentation in one process would put an image's three copies in one batch."""
    from torch.utils.data import DistributedSampler

    from effvit_nas.train.data import open_data
    from effvit_nas.train.distributed import Processes
    from effvit_nas.train.loop import train_loader
    from effvit_nas.train.recipe import recipe_for

    recipe = recipe_for("paper", "digits")[1].updated({"batch_size": "32"})
    assert recipe.repeated_aug
    data = open_data("digits").with_transforms(recipe, 64)
    loader = train_loader(data, recipe, seed=0, workers=0, procs=Processes(0, 1, 0, torch.device("cpu")))
    assert type(loader.sampler) is DistributedSampler
    loader.sampler.set_epoch(0)
    order = list(loader.sampler)
    assert len(set(order)) == len(order) == len(data.train)  # every image once
