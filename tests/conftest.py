"""Shared fixtures."""

from __future__ import annotations

import pytest

from effvit_nas import SearchSpace


@pytest.fixture(scope="session")
def space() -> SearchSpace:
    return SearchSpace.default()
