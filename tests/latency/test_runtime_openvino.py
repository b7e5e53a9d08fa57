import subprocess
import sys

import numpy as np
import pytest
import torch

from effvit_nas import Arch, EffNasError, build_model
from effvit_nas.latency.measure import SweepProtocol, Timing, measure_in_sweeps
from effvit_nas.latency.runtimes import RuntimeConfig, create_runtime, runtime_class
from effvit_nas.latency.runtimes.onnxruntime_cpu import random_input
from tests.conftest import QUICK_BLOCKS

QUICK = SweepProtocol(**QUICK_BLOCKS)

pytestmark = pytest.mark.slow  # exports and compiles real networks

THREADS = 2
SMALL_SHAPE = (1, 3, 64, 64)


def small_model():
    arch = Arch.preset("m0").replace(resolution=64)
    return build_model(arch, num_classes=10).eval().fuse()


def openvino_runtime():
    return create_runtime(RuntimeConfig(runtime="openvino", threads=THREADS))


def test_openvino_is_listed_and_created_without_importing_it_to_list():
    cls = runtime_class("openvino", "cpu")
    assert cls.config_for("cpu", threads=THREADS) == RuntimeConfig(runtime="openvino", threads=THREADS)
    runtime = openvino_runtime()
    assert isinstance(runtime, cls) and runtime.version().startswith("20")
    # listing the runtimes must not import their libraries: checked in a fresh interpreter
    code = ("import sys; from effvit_nas.latency.runtimes import runtime_class; runtime_class('openvino', 'cpu'); "
            "assert 'openvino' not in sys.modules, 'listing imported openvino'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _timed(runtime, forwards: dict) -> dict:
    """Each prepared forward timed by the package's sweeps (a few quick bursts)."""
    class Target:
        def __init__(self, forward):
            self.forward = forward

        def burst(self, rewarm, calls):
            runtime.timed_calls(self.forward, rewarm)
            return runtime.timed_calls(self.forward, calls)

    bursts = measure_in_sweeps({k: Target(f) for k, f in forwards.items()}, dict.fromkeys(forwards, 1.0), QUICK)
    return {k: Timing.of_bursts(b, 0.05) for k, b in bursts.items()}


def test_prepare_times_a_real_model():
    runtime = openvino_runtime()
    t = _timed(runtime, {"m": runtime.prepare(small_model(), SMALL_SHAPE)})["m"]
    assert t.bursts == 3 and 0 < t.latency_ms <= t.p50_ms <= t.p90_ms


def test_the_deployed_file_computes_what_torch_and_onnxruntime_compute(tmp_path):
    from effvit_nas._ort import onnx_session

    model = small_model()
    runtime = openvino_runtime()
    path = runtime.export(model, tmp_path / "m0.onnx", SMALL_SHAPE)
    # the deployed forward runs on random_input(shape): the same array goes to torch and onnxruntime
    x = random_input(SMALL_SHAPE)
    got = runtime.load_deployed(path, SMALL_SHAPE)().to_tuple()[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    session = onnx_session(path)  # this process's sessions share one pool (a plain one is refused beside it)
    from_ort = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == expected.shape == (1, 10)
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    np.testing.assert_allclose(got, from_ort, atol=1e-3, rtol=0)


def test_a_bigger_model_times_slower():
    runtime = openvino_runtime()
    small = runtime.prepare(small_model(), SMALL_SHAPE)
    big = runtime.prepare(build_model(Arch.preset("m4")).eval().fuse(), (1, 3, 224, 224))
    timings = _timed(runtime, {"small": small, "big": big})
    assert timings["big"].latency_ms > 2 * timings["small"].latency_ms


def test_float16_is_refused():
    with pytest.raises(EffNasError, match=r"openvino runtime measures float32 .*bf16/f16.*use --dtype float32"):
        create_runtime(RuntimeConfig(runtime="openvino", threads=THREADS, dtype="float16"))


def test_a_missing_openvino_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(EffNasError, match="pip install openvino"):
        create_runtime(RuntimeConfig(runtime="openvino", threads=THREADS))
