"""The GPU runtimes: torch on CUDA and TensorRT. Without a GPU only the refusals, the registry and the
bookkeeping run; the rest skips."""

import copy
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch

from effvit_nas import Arch, EffNasError, build_model
from effvit_nas.export import export_onnx
from effvit_nas.latency.blocks import build_block
from effvit_nas.latency.keys import AttentionKey, DwFfnKey
from effvit_nas.latency.runtimes import RuntimeConfig, RuntimeDefaults, create_runtime, runtime_class
from effvit_nas.latency.runtimes._cuda import first_call, parse_nvidia_smi
from effvit_nas.latency.runtimes.tensorrt_gpu import TensorRTGPU, graph_structure
from effvit_nas.latency.runtimes.torch_cudagraph import replay_matches

pytestmark = pytest.mark.slow  # exports, builds engines and times on the GPU

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
needs_tensorrt = pytest.mark.skipif(not GPU or importlib.util.find_spec("tensorrt") is None,
                                    reason="needs a CUDA GPU and tensorrt")
BATCH = 8
DWFFN = DwFfnKey(BATCH, 14, 64, 128)
ATTENTION = AttentionKey(BATCH, 14, 64, 2, 16, 7, (5, 5))


def cuda_config(runtime: str, dtype: str = "float16") -> RuntimeConfig:
    return RuntimeConfig(runtime=runtime, device="cuda", batch_size=BATCH, dtype=dtype)


def small_model():
    return build_model(Arch.preset("m0").replace(resolution=64), num_classes=10).eval().fuse()


def randomized(module, seed=0):
    """Every weight drawn afresh, at half the variance-keeping scale. As built, the model zeroes the
    last BN of each residual branch, so its attention and FFN would add nothing to compare; at half
    scale the branches add to the signal without letting it grow out of fp16 range over the network."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5 * p[0].numel() ** -0.5 if p.dim() > 1 else 0.1)
    return module


def assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-2) -> None:
    """Within ``rtol`` of the largest expected magnitude: fp16 kernels round differently."""
    got, expected = got.float(), expected.float()
    assert torch.isfinite(expected).all() and got.shape == expected.shape
    assert (got - expected).abs().max().item() <= rtol * expected.abs().max().item()


# ---------------------------------------------------------------- everywhere
def test_tensorrt_is_registered_with_the_papers_gpu_defaults():
    cls = runtime_class("tensorrt", "cuda")
    assert cls.defaults == {"cuda": RuntimeDefaults(batch_size=2048, threads=1, dtype="float16")}
    assert cls.artifact_suffix == ".plan"
    assert cls.config_for("cuda") == RuntimeConfig(runtime="tensorrt", device="cuda", threads=1, batch_size=2048,
                                                   dtype="float16")
    with pytest.raises(EffNasError, match=r"runs on device \['cuda'\], but device 'cpu' was asked"):
        runtime_class("tensorrt", "cpu")
    # listing the runtimes must not import tensorrt: checked in a fresh interpreter
    code = ("import sys; from effvit_nas.latency.runtimes import runtime_class; runtime_class('tensorrt', 'cuda'); "
            "assert 'tensorrt' not in sys.modules, 'listing imported tensorrt'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("runtime", ["torch", "torch-cudagraph", "tensorrt"])
def test_without_a_gpu_the_cuda_runtimes_refuse_in_one_line(runtime, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EffNasError, match="GPU") as refused:
        create_runtime(cuda_config(runtime))
    assert "\n" not in str(refused.value)


def test_tensorrt_missing_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # checked first; nothing else touches CUDA
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(EffNasError, match="needs the tensorrt package.*pip install tensorrt") as refused:
        runtime_class("tensorrt")(cuda_config("tensorrt")).check_usable()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("runtime", ["torch", "torch-cudagraph", "tensorrt"])
def test_hardware_identity_and_settings_of_a_cuda_runtime_anywhere(runtime):
    instance = runtime_class(runtime)(cuda_config(runtime))  # not create_runtime: no GPU needed
    hardware = instance.hardware()
    json.dumps(hardware)
    assert "cpu_model" in hardware and "gpu" in hardware
    if not GPU:
        assert hardware["gpu"] is None and "gpu_note" in hardware
    # a GPU table holds for the same GPU in another host: the host CPU is not part of its identity
    assert instance.identity_fields == ("gpu", "gpu_sms")
    settings = instance.measurement_settings()
    json.dumps(settings)
    assert "timer" in settings


def test_the_cuda_graph_runtime_runs_on_a_gpu_only_and_says_so_in_its_settings():
    with pytest.raises(EffNasError, match=r"runs on device \['cuda'\].*'cpu'") as refused:
        runtime_class("torch-cudagraph", "cpu")
    assert "\n" not in str(refused.value)
    settings = runtime_class("torch-cudagraph")(cuda_config("torch-cudagraph")).measurement_settings()
    eager = runtime_class("torch")(cuda_config("torch")).measurement_settings()
    assert "cuda_graph" in settings and "cuda_graph" not in eager


def test_a_replay_matches_only_what_eager_computed():
    eager = torch.tensor([[0.5, -1.0, 2.0], [0.25, 0.0, -2.0]], dtype=torch.float16)
    assert replay_matches(eager.clone(), eager)
    assert replay_matches(eager + 0.01, eager)  # fp16 rounding of a reordered reduction
    assert not replay_matches(eager + 0.1, eager)
    assert not replay_matches(torch.full_like(eager, float("nan")), eager)  # what a graph reading freed memory gave
    overflowed = eager.clone()
    overflowed[0, 0] = float("inf")
    assert replay_matches(overflowed.clone(), overflowed)  # the same overflow in the same place
    assert not replay_matches(eager, overflowed)
    nothing = torch.full_like(eager, float("nan"))
    assert not replay_matches(nothing.clone(), nothing)  # nothing finite to compare


def test_the_torch_cpu_runtime_keeps_the_cpu_identity():
    instance = runtime_class("torch")(RuntimeConfig(runtime="torch"))
    assert instance.identity_fields == ("cpu_model", "cores", "machine")
    assert instance.measurement_settings()["memory_format"] == "contiguous"
    assert "gpu" not in instance.hardware()


def test_nvidia_smi_rows_are_read_for_the_right_gpu():
    out = ("GPU-0a1b2c3d-0000-1111-2222-333344445555, 550.54.15, 1980, 2619, 1980, 2619, 700.00\n"
           "GPU-9f8e7d6c-0000-1111-2222-333344445555, 550.54.15, 345, 405, 1755, 1593, [N/A]\n")
    facts = parse_nvidia_smi(out, "9f8e7d6c-0000-1111-2222-333344445555")  # as torch writes a UUID
    assert facts == {"gpu_driver": "550.54.15", "gpu_sm_clock_mhz": 345, "gpu_mem_clock_mhz": 405,
                     "gpu_max_sm_clock_mhz": 1755, "gpu_max_mem_clock_mhz": 1593, "gpu_power_limit_w": None}
    assert parse_nvidia_smi(out, "cccc") is None  # two GPUs, neither this one: no guessing
    assert parse_nvidia_smi(out.splitlines()[0], "")["gpu_power_limit_w"] == 700.0  # the only GPU


def test_out_of_memory_is_refused_with_a_batch_that_would_fit(monkeypatch):
    # the accounting, with torch's CUDA memory calls faked: 1 GiB free, 1 MiB per image at the probe
    for call in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, call, lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 0)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 8 * 2**20)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2**30, 80 * 2**30))

    def setup():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    probed = []
    with pytest.raises(EffNasError, match=r"a module at batch 2048 must fit the GPU's free memory, but it does not "
                                          r"\(1\.0 GiB free of 80\.0 GiB.*about batch 512 would fit: pass "
                                          r"--batch-size 512") as refused:
        first_call(setup, probed.append, 2048, "a module")
    assert probed == [8] and "\n" not in str(refused.value)  # 2 GiB needed at 2048: 0.8 GiB fits 819 -> 512


def _onnx(key, tmp_path, name, seed):
    torch.manual_seed(seed)
    return export_onnx(build_block(key), tmp_path / name, input_shape=key.input_shape()).read_bytes()


def test_the_engine_cache_key_ignores_weights_but_not_shapes(tmp_path):
    first, again = _onnx(DWFFN, tmp_path, "a.onnx", 0), _onnx(DWFFN, tmp_path, "b.onnx", 1)
    assert first != again  # other weights ...
    assert graph_structure(first) == graph_structure(again)  # ... same engine
    wider_window = AttentionKey(BATCH, 14, 64, 2, 16, 14, (5, 5))
    others = [_onnx(DwFfnKey(2 * BATCH, 14, 64, 128), tmp_path, "c.onnx", 0),
              _onnx(ATTENTION, tmp_path, "d.onnx", 0), _onnx(wider_window, tmp_path, "e.onnx", 0)]
    assert len({graph_structure(b) for b in [first, *others]}) == 4


# ---------------------------------------------------------------- torch on the GPU
@needs_gpu
def test_torch_cuda_times_fp16_on_the_device():
    runtime = create_runtime(cuda_config("torch"))
    forward = runtime.prepare(small_model(), (BATCH, 3, 64, 64))
    times = runtime.timed_calls(forward, 5)
    assert len(times) == 5 and all(t > 0 for t in times)
    out = forward()
    torch.cuda.synchronize()
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32


@needs_gpu
def test_a_block_timed_alone_gets_the_networks_fp16_channels_last_input():
    block = build_block(DWFFN)
    seen = []
    block.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    create_runtime(cuda_config("torch")).prepare(block, DWFFN.input_shape())  # runs the first call
    x = seen[0]
    assert x.is_cuda and x.dtype == torch.float16 and tuple(x.shape) == DWFFN.input_shape()
    assert x.is_contiguous(memory_format=torch.channels_last)


@needs_gpu
def test_torch_cuda_refuses_a_batch_that_does_not_fit_with_one_that_would():
    key = DwFfnKey(2**23, 14, 64, 128)  # a 210 GB input
    with pytest.raises(EffNasError, match=r"must fit the GPU's free memory.*--batch-size") as refused:
        create_runtime(cuda_config("torch")).prepare(build_block(key), key.input_shape())
    assert "\n" not in str(refused.value)


@needs_gpu
def test_hardware_on_a_gpu_names_the_gpu_driver_cuda_and_cudnn():
    hardware = create_runtime(cuda_config("torch")).hardware()
    assert hardware["gpu"] == torch.cuda.get_device_name() and hardware["gpu_sms"] > 0
    assert hardware["cuda_runtime"] == torch.version.cuda and hardware["cudnn"]
    if shutil.which("nvidia-smi"):
        assert hardware["gpu_driver"] and hardware["gpu_max_sm_clock_mhz"] > 0


@needs_gpu
def test_the_cuda_graph_runtime_computes_what_eager_computes_on_every_replay(tmp_path):
    module, shape = randomized(small_model()), (BATCH, 3, 64, 64)
    expected = _torch_output(module, shape)  # eager, on the same fixed input
    runtime = create_runtime(cuda_config("torch-cudagraph"))
    forward = runtime.prepare(copy.deepcopy(module), shape)  # the caller keeps no reference to the module
    first = forward().clone()
    # Memory freed since capture is handed out again and filled: a graph whose weights or input were freed
    # would now read NaN (what the first version did on an H200).
    churn = [torch.full((n,), float("nan"), device="cuda", dtype=torch.float16) for n in (512, 8192, 65536)
             for _ in range(100)]
    times = runtime.timed_calls(forward, 5)  # replays in between: the output tensor is rewritten each time
    torch.cuda.synchronize()
    assert len(times) == 5 and all(t > 0 for t in times)
    assert_close(first, expected)
    assert_close(forward(), expected)
    del churn
    path = runtime.export(module, tmp_path / "m.pt", shape)
    assert_close(_waited_output(runtime.load_deployed(path, shape)), expected)


# ---------------------------------------------------------------- TensorRT
@pytest.fixture
def tensorrt(tmp_path, monkeypatch):
    monkeypatch.setattr(TensorRTGPU, "cache_dir", tmp_path / "cache")  # not the user's cache
    return create_runtime(cuda_config("tensorrt"))


def _torch_output(module, shape):
    out = create_runtime(cuda_config("torch")).prepare(copy.deepcopy(module), shape)()
    torch.cuda.synchronize()
    return out


def _waited_output(forward):
    out = forward()
    torch.cuda.synchronize()
    return out


@needs_tensorrt
@pytest.mark.parametrize("what", ["dwffn", "attention", "network"])
def test_tensorrt_computes_what_torch_computes(what, tensorrt, tmp_path):
    if what == "network":
        module, shape = randomized(small_model()), (BATCH, 3, 64, 64)
    else:
        key = DWFFN if what == "dwffn" else ATTENTION
        module, shape = randomized(build_block(key)), key.input_shape()
    expected = _torch_output(module, shape)  # both draw the same fixed input
    prepared = _waited_output(tensorrt.prepare(module, shape))
    assert prepared.dtype == torch.float16
    assert_close(prepared, expected)
    path = tensorrt.export(module, tmp_path / "m.plan", shape)
    assert_close(_waited_output(tensorrt.load_deployed(path, shape)), expected)


@needs_tensorrt
def test_tensorrt_times_on_its_stream_and_caches_engines_by_structure(tensorrt):
    torch.manual_seed(0)
    first = tensorrt.prepare(build_block(DWFFN), DWFFN.input_shape())
    torch.manual_seed(1)
    tensorrt.prepare(build_block(DWFFN), DWFFN.input_shape())  # other weights, same graph: from the cache
    cache = TensorRTGPU.cache_dir
    assert len(list(cache.glob("*.plan"))) == 1 and len(list(cache.glob("timing-*.cache"))) == 1
    times = tensorrt.timed_calls(first, 5)
    assert len(times) == 5 and all(t > 0 for t in times)


@needs_tensorrt
def test_tensorrt_refuses_a_file_that_is_no_engine(tensorrt, tmp_path):
    path = tmp_path / "not.plan"
    path.write_bytes(b"not an engine")
    with pytest.raises(EffNasError, match="could not load it; export it again"):
        tensorrt.load_deployed(path, DWFFN.input_shape())
