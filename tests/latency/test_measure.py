"""The figure every measurement gives (the fast state of burst medians) and the sweeps that take it:
arithmetic on scripted bursts whose answer is known, then real runtimes timing real models."""

import itertools

import pytest
import torch

from effvit_nas import Arch, EffNasError, UnknownNameError, build_model
from effvit_nas.latency.measure import SweepProtocol, Timing, calls_for, fast_state_ms, hardware_info, measure_in_sweeps
from effvit_nas.latency.runtimes import RuntimeConfig, create_runtime
from tests.conftest import QUICK_BLOCKS

QUICK = SweepProtocol(**QUICK_BLOCKS)


class Scripted:
    """A target whose burst answers the next figures of a script, remembering what it was asked."""

    def __init__(self, figures):
        self.figures, self.asked = iter(figures), []

    def burst(self, rewarm, calls):
        self.asked.append((rewarm, calls))
        return [next(self.figures)] * calls


def test_the_figure_is_a_low_quantile_of_burst_medians():
    assert fast_state_ms([5.0, 1.0, 3.0, 2.0, 4.0], 0.25) == 2.0
    assert fast_state_ms([1.0, 2.0], 0.05) == pytest.approx(1.05)  # between order statistics, linearly
    t = Timing.of_bursts([1.0] * 3 + [2.0] * 17, 0.05)  # the machine fast in 3 of 20 bursts
    assert t.latency_ms == 1.0 and t.p50_ms == 2.0 and t.p90_ms == 2.0 and t.moved == 2.0 and t.bursts == 20


def test_a_state_change_moves_the_median_and_not_the_figure():
    # the same network in a window where the machine ran fast a quarter of the time, and in one where it
    # ran fast three quarters of the time: the figures agree, the medians do not
    mostly_slow, mostly_fast = [1.0] * 6 + [1.8] * 18, [1.0] * 18 + [1.8] * 6
    assert Timing.of_bursts(mostly_slow, 0.05).latency_ms == Timing.of_bursts(mostly_fast, 0.05).latency_ms == 1.0
    assert Timing.of_bursts(mostly_slow, 0.05).p50_ms == 1.8 != Timing.of_bursts(mostly_fast, 0.05).p50_ms


def test_sweeps_visit_every_target_once_per_sweep_until_each_has_its_bursts():
    targets = {"a": Scripted(itertools.repeat(1.0)), "b": Scripted(itertools.repeat(4.0))}
    bursts = measure_in_sweeps(targets, {"a": 0.1, "b": 2.0}, QUICK, seed=0)
    assert {k: len(v) for k, v in bursts.items()} == {"a": 3, "b": 3}
    assert bursts["b"] == [4.0] * 3
    # a re-warm and a burst sized to the target's call: 0.5 ms and 1 ms of calls, at least 1, at most 3 (30 re-warm)
    assert targets["a"].asked == [calls_for(0.1, QUICK)] * 3 == [(5, 3)] * 3
    assert targets["b"].asked == [(1, 1)] * 3


def test_a_resumed_window_counts_what_it_had():
    targets = {"a": Scripted(itertools.repeat(1.0))}
    bursts = measure_in_sweeps(targets, {"a": 1.0}, QUICK, bursts_so_far={"a": [2.0, 2.0]})
    assert bursts["a"] == [2.0, 2.0, 1.0] and len(targets["a"].asked) == 1


def test_sweeps_go_on_until_the_window_has_lasted():
    import time

    started = time.perf_counter()
    protocol = SweepProtocol(**{**QUICK_BLOCKS, "min_seconds": 0.2, "gap_ms": 20.0})
    bursts = measure_in_sweeps({"a": Scripted(itertools.repeat(1.0))}, {"a": 1.0}, protocol)
    assert time.perf_counter() - started >= 0.2 and len(bursts["a"]) >= 8  # 20 ms idle after each burst


@pytest.mark.parametrize(("changes", "message"), [
    (dict(min_bursts=2), r"bursts per network \(--bursts\) must be an integer of at least 3, but got 2"),
    (dict(min_seconds=-1.0), r"seconds of measuring \(--seconds\) must be a number of at least 0, but got -1.0"),
    (dict(max_calls=0), r"most calls per burst must be an integer of at least 1, but got 0"),
])
def test_a_bad_protocol_is_refused_in_one_line(changes, message):
    with pytest.raises(EffNasError, match=message):
        SweepProtocol(**{**QUICK_BLOCKS, **changes})


def small_model():
    arch = Arch.preset("m0").replace(resolution=64)
    return arch, build_model(arch, num_classes=10).eval().fuse()


class InProcess:
    def __init__(self, runtime, forward):
        self.runtime, self.forward = runtime, forward

    def burst(self, rewarm, calls):
        self.runtime.timed_calls(self.forward, rewarm)
        return self.runtime.timed_calls(self.forward, calls)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_cpu_runtimes_time_a_real_model_and_rank_a_bigger_one_slower(runtime, ort_threads):
    engine = create_runtime(RuntimeConfig(runtime=runtime, threads=ort_threads))
    big = build_model(Arch.preset("m4")).eval().fuse()  # ~4.7x M0 at 64 px in onnxruntime here, ~1.9x in torch
    targets = {"small": InProcess(engine, engine.prepare(small_model()[1], (1, 3, 64, 64))),
               "big": InProcess(engine, engine.prepare(big, (1, 3, 224, 224)))}
    timings = {k: Timing.of_bursts(b, 0.05) for k, b in measure_in_sweeps(targets, {"small": 1, "big": 5},
                                                                         QUICK).items()}
    assert all(0 < t.latency_ms <= t.p50_ms <= t.p90_ms for t in timings.values())
    assert timings["big"].latency_ms > 1.4 * timings["small"].latency_ms  # torch eager pays per op: ~12 ms for M0


def test_an_unknown_runtime_is_refused():
    with pytest.raises(UnknownNameError, match=r"runtime must be one of \[.*'onnxruntime'.*'torch'.*\], but got 'tvm'"):
        create_runtime(RuntimeConfig(runtime="tvm"))


@pytest.mark.parametrize(("settings", "message"), [
    (dict(threads=0), r"threads \(--threads\) must be an integer of at least 1, but got 0; pass an integer >= 1"),
    (dict(threads=-2), r"threads \(--threads\) must be an integer of at least 1, but got -2"),
    (dict(threads=1.5), r"threads \(--threads\) must be an integer of at least 1, but got 1.5"),
    (dict(batch_size=0), r"batch size \(--batch-size\) must be an integer of at least 1, but got 0"),
    (dict(batch_size=True), r"batch size \(--batch-size\) must be an integer of at least 1, but got True"),
])
def test_runtime_settings_are_refused_when_made_not_when_used(settings, message):
    # a 0 must never reach code where it could read as "unset" (``threads or cpu_count()``)
    with pytest.raises(EffNasError, match=message):
        RuntimeConfig(**settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_clearly():
    with pytest.raises(EffNasError, match="device 'cuda' needs a visible CUDA GPU, but torch sees none"):
        create_runtime(RuntimeConfig(runtime="torch", device="cuda"))


def test_a_device_the_runtime_does_not_run_on_is_refused_with_the_runtimes_that_do():
    with pytest.raises(EffNasError, match=r"runtime 'onnxruntime' runs on device \['cpu'\], but device 'cuda' was "
                                          r"asked; pick another --device, or a runtime that runs on 'cuda': "
                                          r"\[.*'torch'"):
        create_runtime(RuntimeConfig(runtime="onnxruntime", device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_runtime_times_a_model():
    engine = create_runtime(RuntimeConfig(runtime="torch", device="cuda", dtype="float16"))
    target = InProcess(engine, engine.prepare(small_model()[1], (8, 3, 64, 64)))
    assert Timing.of_bursts(measure_in_sweeps({"m": target}, {"m": 1.0}, QUICK)["m"], 0.05).latency_ms > 0


def test_hardware_info_names_the_cpu():
    info = hardware_info()
    assert info["cores"] >= 1 and info["cpu_model"]
