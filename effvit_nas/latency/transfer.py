"""From one table's predictions to another machine's or runtime's latency: the fit an adapted table carries.

An adapted table (``adapt.py``) keeps its source's blocks, models and calibration and multiplies the
source's prediction ``p`` by ``exp(coef . z)``, where ``z`` is one of a few small feature sets of the
arch and ``p``. Fitted by least squares on log(measured / p) over a few whole networks measured under
the deployment rule on the new target. Which set is used is chosen per adaptation by leave-one-out
error, simplest first on ties: with 20-30 networks a richer form must earn its parameters.

- ``scale``: one factor (a machine that is uniformly faster or slower);
- ``power``: p^b (a runtime whose fixed per-call cost differs: small networks move more than large);
- ``power+resolution``: and the input size (activation-bound work moves unlike weight-bound work);
- ``power+kinds``: and the shares of attention and DW/FFN blocks in the source's block sum (a runtime
  whose attention kernels are better or worse than its convolutions, e.g. OpenVINO against onnxruntime).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import TableError

__all__ = ["TRANSFER_FORMS", "Transfer", "TransferInputs", "fit_transfer", "leave_one_out_ratios"]


@dataclass(frozen=True)
class TransferInputs:
    """What a transfer reads of one arch: the source's prediction and the source's block sum by kind."""

    source_ms: float
    resolution: int
    kind_ms: dict[str, float]  # the source's block latencies summed per key kind (stem, attention, ...)

    def share(self, kind: str) -> float:
        return self.kind_ms.get(kind, 0.0) / sum(self.kind_ms.values())


Features = Callable[[TransferInputs], tuple[float, ...]]
# name -> the features z (the first is always the constant). Resolution over 224 and shares keep every
# feature near 1, so one small ridge penalty means the same for each.
TRANSFER_FORMS: dict[str, Features] = {
    "scale": lambda x: (1.0,),
    "power": lambda x: (1.0, math.log(x.source_ms)),
    "power+resolution": lambda x: (1.0, math.log(x.source_ms), x.resolution / 224),
    "power+kinds": lambda x: (1.0, math.log(x.source_ms), x.share("attention"), x.share("dwffn")),
}
RIDGE = 1e-3  # on every coefficient but the constant: keeps a form with a nearly constant feature finite


@dataclass(frozen=True)
class Transfer:
    """adapted_ms = source_ms * exp(coef . z(form))."""

    form: str
    coef: tuple[float, ...]

    def apply(self, inputs: TransferInputs) -> float:
        return inputs.source_ms * math.exp(float(np.dot(self.coef, TRANSFER_FORMS[self.form](inputs))))

    def to_dict(self) -> dict:
        return {"form": self.form, "coef": list(self.coef)}

    @classmethod
    def from_dict(cls, data: dict) -> Transfer:
        if data["form"] not in TRANSFER_FORMS:
            raise TableError(f"an adapted table's transfer form must be one of {sorted(TRANSFER_FORMS)}, but it "
                             f"records {data['form']!r}; adapt the table again with this effvit-nas")
        return cls(data["form"], tuple(data["coef"]))


def _fit(form: str, inputs: Sequence[TransferInputs], measured_ms: Sequence[float]) -> Transfer:
    z = np.array([TRANSFER_FORMS[form](x) for x in inputs], float)
    target = np.log(np.asarray(measured_ms, float) / [x.source_ms for x in inputs])
    penalty = np.diag([0.0] + [RIDGE * len(inputs)] * (z.shape[1] - 1))
    coef = np.linalg.solve(z.T @ z + penalty, z.T @ target)
    return Transfer(form, tuple(float(c) for c in coef))


def leave_one_out_ratios(form: str, inputs: Sequence[TransferInputs], measured_ms: Sequence[float]) -> list[float]:
    """measured / predicted for each network, predicted by the form fitted without it."""
    ratios = []
    for i in range(len(inputs)):
        rest = [j for j in range(len(inputs)) if j != i]
        transfer = _fit(form, [inputs[j] for j in rest], [measured_ms[j] for j in rest])
        ratios.append(measured_ms[i] / transfer.apply(inputs[i]))
    return ratios


def fit_transfer(inputs: Sequence[TransferInputs], measured_ms: Sequence[float]) -> tuple[Transfer, dict[str, float]]:
    """The form with the lowest leave-one-out median error (the simplest on a tie), fitted on every
    network; and each form's leave-one-out median error, for the record."""
    errors = {form: float(np.median([abs(1 / r - 1) for r in leave_one_out_ratios(form, inputs, measured_ms)]))
              for form in TRANSFER_FORMS if len(inputs) > len(TRANSFER_FORMS[form](inputs[0])) + 1}
    best = min(errors, key=lambda form: (round(errors[form], 4), list(TRANSFER_FORMS).index(form)))
    return _fit(best, inputs, measured_ms), errors
