"""Hypothesis strategies for random archs, shared by the test files."""

from __future__ import annotations

from hypothesis import strategies as st

from effvit_nas import Arch, SearchSpace


@st.composite
def space_archs(draw, paper_family: bool = False) -> Arch:
    """A random arch of the default space (seeded through hypothesis, so failures shrink and replay)."""
    arch = SearchSpace.default().sample(draw(st.integers(0, 2**32 - 1)))
    if paper_family:  # what timm's EfficientVitMsra can build: FFN ratio 2 everywhere
        arch = arch.replace(ffn_ratios=(2, 2, 2))
    return arch
