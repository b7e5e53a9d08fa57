"""The deployment rule for real: a measuring process that times each file in a process of its own, all
in one window, and reports a file that cannot run."""

import pytest

from effvit_nas import Arch, build_model
from effvit_nas.export import export_onnx
from effvit_nas.latency.deploy import measure_deployed
from effvit_nas.latency.deploy_worker import TimedProcess
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.runtimes.onnxruntime_cpu import OnnxRuntimeCPU
from tests.conftest import quick_rule

pytestmark = pytest.mark.slow  # spawns processes: `pytest -m "not slow"` skips it


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployed")
    out = {}
    for name, arch in (("small", Arch.preset("m0").replace(resolution=64)), ("big", Arch.preset("m4"))):
        shape = (1, 3, arch.resolution, arch.resolution)
        out[name] = (export_onnx(build_model(arch).eval().fuse(), folder / f"{name}.onnx", input_shape=shape), shape)
    return out


def test_every_file_is_timed_in_its_own_process_in_one_window_and_a_broken_one_is_reported(files, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    rule = quick_rule(min_bursts=4)
    # the same file twice: two processes, one window (and three at once: each must exit when its pipe closes)
    run = measure_deployed(RuntimeConfig(threads=1), {"big": files["big"], "big again": files["big"],
                                                      "small": files["small"], "broken": (broken, (1, 3, 8, 8))}, rule)
    assert set(run.timings) == {"big", "big again", "small"} and "broken" in run.failures
    assert all(t.bursts == len(run.bursts[k]) >= 4 for k, t in run.timings.items())
    assert all(0 < t.latency_ms <= t.p50_ms <= t.p90_ms for t in run.timings.values())
    assert run.timings["big"].latency_ms > 2 * run.timings["small"].latency_ms  # M4 at 224 px against M0 at 64
    # two processes of one file, side by side in the window: the same figure within what a quick window allows
    assert run.timings["big again"].latency_ms == pytest.approx(run.timings["big"].latency_ms, rel=0.3)


def test_a_runtime_that_cannot_fork_is_timed_in_a_new_interpreter(files):
    """CUDA runtimes time each file in a new interpreter started as ``python -m``; run here with onnxruntime
    told it cannot fork (the path is the same), since it once named itself ``-m __main__`` and failed on
    every GPU."""

    class NoFork(OnnxRuntimeCPU):
        def forks_cleanly(self) -> bool:
            return False

    process = TimedProcess(NoFork(RuntimeConfig(threads=1)), str(files["small"][0]), files["small"][1], 3)
    try:
        assert process.process is not None and process.ready() > 0
        times = process.burst(2, 5)
        assert len(times) == 5 and all(t > 0 for t in times)
    finally:
        process.close()
    assert process.process.returncode == 0
