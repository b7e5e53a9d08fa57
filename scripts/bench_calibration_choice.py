"""Which calibration would have predicted a table's validation networks best: none, one scale factor,
or the build's trees? Offline, from committed measurements only (nothing is timed here).

Run:  python scripts/bench_calibration_choice.py

For each table with a committed validation report (docs/validation/<table>/report.json), every
candidate is fitted on the table's own calibration points (the networks its build timed under the
deployment rule) and judged out of fold on those points (what a build could see when it chooses) and
on the validation networks (timed later, in other processes: the outside truth), both by their raw
figures and drift-corrected by the reference timed beside them (``table validate``'s correction: on
this CPU, whose speed state moves, the corrected figure is the fair one; on a GPU, the raw one). The
GPU table's file lives with its GPU check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import save_result

from effvit_nas import Arch
from effvit_nas.latency.fit import Calibration, fit_calibration
from effvit_nas.latency.table import LatencyTable

REPO = Path(__file__).resolve().parents[1]
VALIDATION = REPO / "docs" / "validation"
TABLES = {  # table (name or file) -> its validation folder
    "amd-epyc-2core-ort-b1": "amd-epyc-2core-ort-b1",
    "amd-epyc-2core-ort-b1-shapes": "amd-epyc-2core-ort-b1-shapes",
    "amd-epyc-2core-openvino-b1": "amd-epyc-2core-openvino-b1",
    "amd-epyc-2core-torch-b16": "amd-epyc-2core-torch-b16",
    str(VALIDATION / "h200-gpu-check" / "h200-torch-fp16-b256-micro.json"): "h200-torch-fp16-b256-micro",
}
FOLDS = 5


def _none(points: list[dict]) -> Calibration:
    return Calibration()


def _scale(points: list[dict]) -> Calibration:  # one factor: the median log ratio of measured to block sum
    return Calibration(base=float(np.median([np.log(p["measured_ms"] / p["block_sum_ms"]) for p in points])))


def _trees(points: list[dict]) -> Calibration:  # what the build fits (latency/fit.py)
    return fit_calibration([p["features"] for p in points], [p["block_sum_ms"] for p in points],
                           [p["measured_ms"] for p in points], seed=0)


CANDIDATES: dict[str, Callable[[list[dict]], Calibration]] = {"none": _none, "scale": _scale, "trees": _trees}


def _figures(errors: list[float]) -> dict[str, float]:
    e = np.abs(errors)
    return {"median_abs_err": float(np.median(e)), "within_10pct": float(np.mean(e <= 0.10)), "n": len(e)}


def _out_of_fold(fit: Callable[[list[dict]], Calibration], points: list[dict]) -> dict[str, float]:
    errors = []
    for fold in range(FOLDS):
        train = [p for i, p in enumerate(points) if i % FOLDS != fold]
        held = [p for i, p in enumerate(points) if i % FOLDS == fold]
        calibration = fit(train)
        errors += [calibration.apply(p["block_sum_ms"], p["features"]) / p["measured_ms"] - 1 for p in held]
    return _figures(errors)


def compare(table_name: str, folder: str) -> dict:
    table = LatencyTable.load(table_name)
    points = table.data["calibration"]["points"]
    rows = json.loads((VALIDATION / folder / "report.json").read_text())["rows"]
    inputs = [table.calibration_inputs(Arch.from_dict(r["arch"])) for r in rows]
    result = {"calibration_points": len(points), "validation_networks": len(rows)}
    for name, fit in CANDIDATES.items():
        calibration = fit(points)
        predicted = [calibration.apply(s, f) for s, f in inputs]
        result[name] = {"out_of_fold": _out_of_fold(fit, points)} | {
            f"validation_{kind}": _figures([p / r[key] - 1 for p, r in zip(predicted, rows)])
            for kind, key in (("raw", "measured_ms"), ("corrected", "measured_corrected_ms"))}
    return result


def main() -> None:
    results = {Path(name).stem: compare(name, folder) for name, folder in TABLES.items()}
    print(f"{'table':28s} {'candidate':9s} median error, within ±10%: out of fold | validation raw | corrected")
    for table, result in results.items():
        for name in CANDIDATES:
            cells = [result[name][k] for k in ("out_of_fold", "validation_raw", "validation_corrected")]
            print(f"{table:28s} {name:9s} " + " | ".join(f"{c['median_abs_err']:6.1%} {c['within_10pct']:4.0%}"
                                                       for c in cells))
    path = save_result("calibration_choice", "python scripts/bench_calibration_choice.py",
                       {"candidates": {"none": "block sum as is", "scale": "median measured/block-sum ratio",
                                       "trees": "the build's gradient-boosted correction (latency/fit.py)"},
                        "judged_by": "validation networks' raw and drift-corrected figures", "tables": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
