"""``params`` and ``macs``: the baselines every other estimator must beat (log of the count)."""

from __future__ import annotations

import math

from ..arch import Arch
from ..counting import count
from ._base import AccuracyEstimator, register_estimator

__all__ = ["Params", "Macs"]


class _LogCount(AccuracyEstimator):
    count_field = ""  # a field of counting.count(arch)

    def score(self, arch: Arch) -> float:
        return math.log(getattr(count(arch), self.count_field))


@register_estimator
class Params(_LogCount):
    name = "params"
    description = "ln(parameters): bigger is better"
    count_field = "params"


@register_estimator
class Macs(_LogCount):
    name = "macs"
    description = "ln(multiply-accumulates at the arch's resolution): more compute is better"
    count_field = "macs"
