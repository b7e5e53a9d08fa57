"""LatencyMeter's parallel exports: the same files as one at a time, from real export processes."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from effvit_nas.errors import EffNasError
from effvit_nas.latency.meter import LatencyMeter
from effvit_nas.latency.runtimes import RuntimeConfig

pytestmark = pytest.mark.slow  # starts export processes (each imports torch)


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """Two export processes, whatever this machine has."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)


def _input_shape(path):
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims)


def _ops(path):
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_archs_exported_side_by_side_are_the_files_one_at_a_time_would_be(tiny_space):
    space = tiny_space
    rng = np.random.default_rng(0)
    archs = list({a.arch_id: a for a in (space.sample(rng) for _ in range(8))}.values())[:3]
    with LatencyMeter(RuntimeConfig(threads=1)) as meter:
        files = meter.export_archs(archs)
        assert list(files) == [a.arch_id for a in archs]  # in the order asked, whichever process exported it
        for arch in archs:
            path, shape = files[arch.arch_id]
            assert path.name == f"{arch.arch_id}.onnx" and shape == (1, 3, arch.resolution, arch.resolution)
            assert _input_shape(path) == shape
        assert len(meter._exporters) == 2  # noqa: SLF001 - side by side, not one at a time in this process
        again = meter.export_archs(archs[:2])  # the same processes answer a second chunk
        assert list(again) == [a.arch_id for a in archs[:2]] and len(meter._exporters) == 2  # noqa: SLF001
        in_a_process = _ops(files[archs[0].arch_id][0])
        meter.export_arch(archs[0])  # the same arch exported here, over the same path
        assert _ops(files[archs[0].arch_id][0]) == in_a_process


def test_a_failed_export_and_a_dead_export_process_are_one_clear_line_each(tiny_space):
    smallest, largest = tiny_space.smallest(), tiny_space.largest()
    with LatencyMeter(RuntimeConfig(threads=1)) as meter:
        meter.export_archs([smallest, largest])  # the export processes are up
        folder = meter._folder  # noqa: SLF001 - the folder they write into, made a file
        shutil.rmtree(folder)
        folder.write_text("")
        with pytest.raises(EffNasError, match=r"must export for onnxruntime, but 2 of these did not .*"
                                              r"effnas export") as failed:
            meter.export_archs([smallest, largest])
        assert meter._exporters == []  # noqa: SLF001 - dropped after a failure: a next chunk starts afresh
        folder.unlink()
        folder.mkdir()
        meter.export_archs([smallest, largest])  # fresh processes
        process, _ = meter._exporters[0]  # noqa: SLF001 - one of them, killed between chunks
        process.kill()
        process.wait()
        with pytest.raises(EffNasError, match=r"must export for onnxruntime, but 1 of these did not \(first "
                                              rf"{smallest.arch_id}: the export process exited \(-9\)") as died:
            meter.export_archs([smallest, largest])
    assert "\n" not in str(died.value) and "\n" not in str(failed.value)
