"""Tables with many and with few prediction residuals, made from the session's tiny table."""

from __future__ import annotations

import json
from pathlib import Path

from effvit_nas.latency.table import LatencyTable

# measured / predicted of 19 held-out networks, 1.00 .. 1.18
RATIOS = [round(1 + i / 100, 2) for i in range(19)]


def table_with_residuals(path: Path, ratios: list[float] = RATIOS) -> LatencyTable:
    """The table at ``path`` as if its build had recorded ``ratios`` (stored unsorted: largest first); the
    rest of its "deployment" record, where it has one, is kept."""
    data = json.loads(Path(path).read_text())
    deployment = {**data.get("deployment", {}), "residual_ratios": sorted(ratios, reverse=True)}
    return LatencyTable.from_dict({**data, "deployment": deployment})


def table_with_few_residuals(path: Path) -> LatencyTable:
    """The table at ``path`` with 3 residuals: too few for the default confidence (19 needed at 0.95), as a
    table adapted from a handful of networks has."""
    return table_with_residuals(path, RATIOS[:3])
