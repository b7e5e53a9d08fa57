"""Hand an architecture over: timm constructor kwargs, and ONNX checked against torch.

torch, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .arch import Arch
from .errors import InvalidArchError

if TYPE_CHECKING:
    import torch

__all__ = ["timm_kwargs", "export_onnx", "onnx_max_abs_diff", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def timm_kwargs(arch: Arch) -> dict[str, Any]:
    """Keyword arguments for ``timm.models.efficientvit_msra.EfficientVitMsra`` that build ``arch``.

    timm fixes the FFN ratio at 2, so only archs with ratio 2 in every stage fit its parameterization.
    """
    if not arch.is_paper_family():
        raise InvalidArchError(
            f"timm's EfficientVitMsra fixes the FFN ratio at 2, but this arch has ffn_ratios "
            f"{list(arch.ffn_ratios)}; build it with effvit_nas.build_model instead"
        )
    return dict(
        img_size=arch.resolution,
        embed_dim=tuple(arch.widths),
        key_dim=tuple(arch.key_dims),
        depth=tuple(arch.depths),
        num_heads=tuple(arch.heads),
        window_size=tuple(arch.window_sizes),
        kernels=tuple(arch.kernels),
    )


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    resolution: int | None = None,
    *,
    batch_size: int = 1,
    input_shape: tuple[int, ...] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export an eval-mode model to ONNX at a fixed input shape, atomically, and run ``onnx.checker``.

    The input is ``(batch_size, 3, resolution, resolution)`` for a whole network, or ``input_shape``
    for a block of one (what latency tables measure).

    The TorchScript-based exporter is used on purpose: the graph is static (fixed shapes), and it is
    about 10x faster than the dynamo exporter, which matters when a latency table exports hundreds
    of blocks.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if input_shape is None:
        if resolution is None:
            raise TypeError("export_onnx needs a resolution or an input_shape")
        input_shape = (batch_size, 3, resolution, resolution)
    dummy = torch.randn(*input_shape)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation notes about the exporter choice
            torch.onnx.export(
                model.eval(), (dummy,), tmp, input_names=["input"], output_names=["output"],
                opset_version=opset, dynamo=False,
            )
        onnx.checker.check_model(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def onnx_max_abs_diff(path: str | os.PathLike, model: torch.nn.Module, resolution: int, *, batch_size: int = 1,
                      seed: int = 0) -> float:
    """Largest |torch - onnxruntime| over the outputs for one random input."""
    import numpy as np
    import torch

    from .latency.measure import onnx_session

    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = onnx_session(path)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
