"""Hand an architecture over: timm constructor kwargs, and ONNX checked against torch.

``export_checked_onnx`` is the one rule for handing a model over as ONNX (``effnas export`` and
``effnas verify`` both use it): fold the BNs, export, and keep the file only if onnxruntime computes
what torch does. torch, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import atomic_path, check_out_file
from .arch import Arch
from .errors import EffNasError, InvalidArchError

if TYPE_CHECKING:
    import torch

__all__ = ["timm_kwargs", "export_onnx", "onnx_max_abs_diff", "export_checked_onnx", "export_arch_onnx",
           "DEFAULT_OPSET", "MAX_ONNX_DIFF"]

DEFAULT_OPSET = 17
# Largest |onnxruntime - torch| on the logits accepted for a handed-over model. Both compute in fp32
# and differ only by summation order and fused kernels, orders of magnitude below this; a wrong graph
# (a dropped bias, a transposed weight) differs by far more.
MAX_ONNX_DIFF = 1e-3


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

    The TorchScript-based exporter is used on purpose: the graph is static (fixed shapes), and it
    exports much faster than the dynamo exporter, which matters when a latency table exports hundreds
    of blocks.
    """
    import onnx
    import torch

    path = Path(path)
    if input_shape is None:
        if resolution is None:
            raise TypeError("export_onnx needs a resolution or an input_shape")
        input_shape = (batch_size, 3, resolution, resolution)
    dummy = torch.randn(*input_shape)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notes about the exporter choice
        torch.onnx.export(
            model.eval(), (dummy,), str(tmp), input_names=["input"], output_names=["output"],
            opset_version=opset, dynamo=False,
        )
        onnx.checker.check_model(str(tmp))
    return path


def onnx_max_abs_diff(path: str | os.PathLike, model: torch.nn.Module, resolution: int, *, batch_size: int = 1,
                      seed: int = 0) -> float:
    """Largest |torch - onnxruntime| over the outputs for one random input."""
    import numpy as np
    import torch

    from ._ort import onnx_session

    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = onnx_session(path)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())


def export_checked_onnx(model: torch.nn.Module, path: str | os.PathLike, resolution: int, *,
                        batch_size: int = 1, flag: str = "--onnx") -> tuple[Path, float]:
    """Fold ``model``'s BatchNorms (in place; it stays in eval mode), export it to ``path`` and check that
    onnxruntime matches torch within ``MAX_ONNX_DIFF``. Returns the path and the largest difference.
    On a mismatch nothing is written (an existing file at ``path`` is left as it was)."""
    path = check_out_file(path, flag)
    model = model.eval().fuse()
    with atomic_path(path, suffix=".onnx") as tmp:
        export_onnx(model, tmp, resolution, batch_size=batch_size)
        diff = onnx_max_abs_diff(tmp, model, resolution, batch_size=batch_size)
        if diff > MAX_ONNX_DIFF:
            raise EffNasError(f"the ONNX export must match torch within {MAX_ONNX_DIFF:g}, but differs by {diff:.2e}; "
                              "nothing was written (report this arch: the exporter mistranslated it)")
    return path, diff


def export_arch_onnx(arch: Arch, path: str | os.PathLike, checkpoint: str | os.PathLike | None = None, *,
                     batch_size: int = 1) -> tuple[Path, float, list[str]]:
    """``arch``'s network (with the weights of ``checkpoint``, an ``effnas train`` checkpoint or a state
    dict, when given) exported by ``export_checked_onnx``. Returns the path, the largest difference
    onnxruntime vs torch, and the notes on how the checkpoint's weights were loaded."""
    from .model import build_model
    from .train.checkpoint import trained_model

    check_out_file(path, "--onnx")  # before the checkpoint is read: a bad path fails first and fast
    if checkpoint:
        model, _, notes = trained_model(arch, checkpoint)
    else:
        model, notes = build_model(arch), []
    exported, diff = export_checked_onnx(model, path, arch.resolution, batch_size=batch_size)
    return exported, diff, notes
