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


def _input_shape(path):
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims)


def test_archs_exported_side_by_side_are_the_files_one_at_a_time_would_be(tiny_space, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # two export processes, whatever this machine has
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
        again = meter.export_archs(archs[:2])  # the processes answer a second chunk
        assert list(again) == [a.arch_id for a in archs[:2]] and meter.export_arch(archs[0]) == files[archs[0].arch_id]


def test_an_export_that_fails_is_one_clear_line(tiny_space, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    archs = [tiny_space.smallest(), tiny_space.largest()]
    with LatencyMeter(RuntimeConfig(threads=1)) as meter:
        folder = meter._folder  # noqa: SLF001 - the folder the export processes write into, made a file
        shutil.rmtree(folder)
        folder.write_text("")
        with pytest.raises(EffNasError, match=rf"must export for onnxruntime, but {archs[0].arch_id} did not: "
                                              r".*effnas export") as refused:
            meter.export_archs(archs)
        folder.unlink()
        folder.mkdir()  # for the meter's own clean-up
    assert "\n" not in str(refused.value)
