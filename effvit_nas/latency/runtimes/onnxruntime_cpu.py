"""onnxruntime's CPU provider: how a model is usually deployed on a CPU server."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import register_runtime
from ._base import Forward, Runtime, RuntimeDefaults

if TYPE_CHECKING:
    import torch


def random_input(shape: tuple[int, ...]):
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


@register_runtime
class OnnxRuntimeCPU(Runtime):
    name = "onnxruntime"
    library = "onnxruntime"
    defaults = {"cpu": RuntimeDefaults(batch_size=1, threads=None, dtype="float32")}  # a server: batch 1, every core

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, module: torch.nn.Module, input_shape: tuple[int, ...]) -> Forward:
        from ..._ort import onnx_session

        with tempfile.TemporaryDirectory() as tmp:
            # the session holds the graph in memory: the file can go
            session = onnx_session(self.export(module, Path(tmp) / "m.onnx", input_shape), self.config.threads)
        feeds = {session.get_inputs()[0].name: random_input(input_shape)}
        return lambda: session.run(None, feeds)

    def load_deployed(self, path: Path, input_shape: tuple[int, ...]) -> Forward:
        # a plain session: its own pool of the table's threads, every other option at onnxruntime's default
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {session.get_inputs()[0].name: random_input(input_shape)}
        return lambda: session.run(None, feeds)
