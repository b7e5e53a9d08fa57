"""EfficientViT as a static network built from an ``Arch`` (torch is imported here, not earlier)."""

from .network import EfficientViT, build_model

__all__ = ["EfficientViT", "build_model"]
