import pytest
import torch

from effvit_nas import Arch, EffNasError, UnknownNameError, build_model
from effvit_nas.latency.measure import Timing, hardware_info, measure_interleaved
from effvit_nas.latency.runtimes import RuntimeConfig, create_runtime

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def small_model():
    arch = Arch.preset("m0").replace(resolution=64)
    return arch, build_model(arch, num_classes=10).eval().fuse()


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_cpu_runtimes_time_a_real_model(runtime, ort_threads):
    arch, model = small_model()
    forward = create_runtime(RuntimeConfig(runtime=runtime, threads=ort_threads)).prepare(model, (1, 3, 64, 64))
    timings = measure_interleaved({"m": forward}, rounds=3, calls_per_round=5, warmup_calls=2)
    t = timings["m"]
    assert t.samples == 15 and 0 < t.p25_ms <= t.median_ms <= t.p75_ms


def test_interleaving_ranks_a_bigger_model_slower(ort_threads):
    small = create_runtime(RuntimeConfig(threads=ort_threads)).prepare(small_model()[1], (1, 3, 64, 64))
    big_arch = Arch.preset("m4")  # ~4.7x M0 at 64 px here (M0 at 224 was only ~2.1x: a coin flip at 2x)
    big_model = build_model(big_arch).eval().fuse()
    big = create_runtime(RuntimeConfig(threads=ort_threads)).prepare(big_model, (1, 3, 224, 224))
    timings = measure_interleaved({"small": small, "big": big}, rounds=3, calls_per_round=5)
    assert timings["big"].median_ms > 2 * timings["small"].median_ms


def test_timing_statistics():
    t = Timing.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median_ms == 3.0 and t.p25_ms == 2.0 and t.p75_ms == 4.0 and t.spread == pytest.approx(2 / 3)


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
    arch, model = small_model()
    forward = create_runtime(RuntimeConfig(runtime="torch", device="cuda", dtype="float16")).prepare(
        model, (8, 3, 64, 64)
    )
    assert measure_interleaved({"m": forward}, rounds=2, calls_per_round=3)["m"].median_ms > 0


def test_hardware_info_names_the_cpu():
    info = hardware_info()
    assert info["cores"] >= 1 and info["cpu_model"]
