"""The callback every long job (a table build or adaptation, a search, a refinement, a training run)
reports its progress through, so one CLI progress bar serves them all."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]  # (done, total, what is being done) -> None
