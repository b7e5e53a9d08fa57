"""The deployment rule: a real measuring process (fresh child per measurement), and the per-round
arithmetic on answers whose results are known."""

import itertools
from pathlib import Path

import pytest

from effvit_nas import Arch, EffNasError, build_model
from effvit_nas.export import export_onnx
from effvit_nas.latency.deploy import DeploymentRule, DeploymentServer, measure_deployed
from effvit_nas.latency.runtimes import RuntimeConfig

pytestmark = pytest.mark.slow  # spawns processes: `pytest -m "not slow"` skips it
QUICK = DeploymentRule(rounds=2, warmup_calls=3, calls=10, min_calls=5)


class ScriptedServer:
    """Answers each measurement with the next figure of a script (per file), as the worker would."""

    config = RuntimeConfig(threads=1)

    def __init__(self, script):
        self.script = {k: iter(v) for k, v in script.items()}

    def measure(self, path, shape, rule):
        figure = next(self.script[str(path)])
        if isinstance(figure, str):
            return {"error": figure}
        return {"median_ms": figure, "p25_ms": 0.9 * figure, "p75_ms": 1.1 * figure, "p90_ms": 1.2 * figure}


def test_the_per_round_ratio_takes_out_a_machine_that_halves_its_speed_between_rounds():
    # round 1 at full speed, round 2 at half: the raw median mixes both, the ratio does not move
    server = ScriptedServer({"net": [3.0, 6.0], "ref": [1.0, 2.0]})
    run = measure_deployed(server, {"net": (Path("net"), (1,))}, (Path("ref"), (1,)), QUICK)
    timing = run.timings["net"]
    assert timing.rounds_ms == (3.0, 6.0) and timing.median_ms == 4.5 and timing.relative == 3.0
    assert run.reference.median_ms == 1.5 and not run.failures


def test_a_file_that_fails_is_reported_once_and_never_given_a_figure():
    server = ScriptedServer({"bad": ["RuntimeException: out of memory"], "ok": [2.0, 2.0], "ref": [1.0, 1.0]})
    run = measure_deployed(server, {"bad": (Path("bad"), (1,)), "ok": (Path("ok"), (1,))}, (Path("ref"), (1,)), QUICK)
    assert run.failures == {"bad": "RuntimeException: out of memory"} and set(run.timings) == {"ok"}


def test_a_reference_that_fails_stops_the_measurement():
    server = ScriptedServer({"ok": itertools.repeat(1.0), "ref": ["no such file"]})
    with pytest.raises(EffNasError, match="the reference network must run under onnxruntime, but it failed: no such"):
        measure_deployed(server, {"ok": (Path("ok"), (1,))}, (Path("ref"), (1,)), QUICK)


def test_a_real_measuring_process_times_files_in_fresh_children_and_reports_a_broken_one(tmp_path):
    small, big = Arch.preset("m0").replace(resolution=64), Arch.preset("m4")
    files = {}
    for name, arch in (("small", small), ("big", big)):
        shape = (1, 3, arch.resolution, arch.resolution)
        files[name] = (export_onnx(build_model(arch).eval().fuse(), tmp_path / f"{name}.onnx", input_shape=shape),
                       shape)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with DeploymentServer(RuntimeConfig(threads=1)) as server:
        run = measure_deployed(server, {"big": files["big"], "broken": (broken, (1, 3, 8, 8))}, files["small"], QUICK)
    assert set(run.timings) == {"big"} and "broken" in run.failures
    big_timing = run.timings["big"]
    assert len(big_timing.rounds_ms) == 2 and big_timing.p25_ms <= big_timing.median_ms <= big_timing.p90_ms
    assert big_timing.relative > 2  # M4 at 224 px against M0 at 64 px: several times slower in any state


def test_the_new_interpreter_path_for_runtimes_that_cannot_fork_measures_a_file(tmp_path):
    """CUDA runtimes measure in a new interpreter started as ``python -m``; run here with onnxruntime
    (the path is the same), since it once named itself ``-m __main__`` and failed on every GPU."""
    import json

    from effvit_nas.latency.deploy_worker import RESULT, _in_new_interpreter

    shape = (1, 3, 64, 64)
    path = export_onnx(build_model(Arch.preset("m0").replace(resolution=64)).eval().fuse(), tmp_path / "m0.onnx",
                       input_shape=shape)
    request = {"path": str(path), "shape": list(shape), "warmup_calls": 3, "calls": 10, "min_calls": 5,
               "burst_ms": 100.0}
    answer = json.loads(_in_new_interpreter(RuntimeConfig(threads=1), request).removeprefix(RESULT))
    assert "error" not in answer, answer
    assert answer["calls"] >= 5 and 0 < answer["p25_ms"] <= answer["median_ms"] <= answer["p90_ms"]
