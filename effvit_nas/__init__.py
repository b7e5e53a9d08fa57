"""effvit-nas: hardware-aware architecture search for EfficientViT (Liu et al., CVPR 2023).

The public API fits on one screen. ``import effvit_nas`` stays light: torch, onnxruntime and ray load
only when a function that needs them is called (``build_model`` is resolved lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .arch import Arch
from .errors import (
    ConfigFileError,
    EffNasError,
    InvalidArchError,
    InvalidSpaceError,
    TableError,
    UnknownNameError,
)
from .space import SearchSpace

if TYPE_CHECKING:
    from .latency.table import LatencyTable
    from .model import build_model

__version__ = "0.1.0"
__all__ = [
    "Arch",
    "SearchSpace",
    "build_model",
    "EffNasError",
    "ConfigFileError",
    "InvalidArchError",
    "InvalidSpaceError",
    "UnknownNameError",
    "TableError",
    "LatencyTable",
]


def __getattr__(name: str) -> Any:
    if name == "build_model":  # imports torch
        from .model import build_model

        return build_model
    if name == "LatencyTable":  # imports numpy
        from .latency.table import LatencyTable

        return LatencyTable
    raise AttributeError(f"module 'effvit_nas' has no attribute {name!r}")
