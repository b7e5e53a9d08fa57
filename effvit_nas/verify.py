"""Measure the real thing on the target, and say whether it keeps its promise.

``verify`` builds the arch (with trained weights when given), folds its BatchNorms, exports ONNX,
and has that artifact judged (``latency/judge.py``): timed under the deployment rule (a process of
its own, a plain session of the table's runtime at its threads and batch, the fast state of its
bursts over a window) beside the table's reference network and, for a model budget (``m1``), beside
that model. The verdict compares the figure with the budget; the median and p90 of its bursts stand
beside it, with how far the machine moved and how its reference compares with the table's. It
compares the figure with the table's prediction too, evaluates top-1 when a checkpoint and data are
given, and writes ``verify.json`` and ``verify.md``.

A table only speaks for the hardware it was measured on: elsewhere ``verify`` refuses, unless
forced, and then the report says so at the top.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, check_out_dir
from .arch import Arch
from .budget import Budget
from .errors import EffNasError, TableError
from .export import export_checked_onnx
from .latency.deploy import DeploymentRule
from .latency.judge import judge
from .latency.measure import hardware_info
from .latency.meter import network_shape
from .latency.table import LatencyTable
from .provenance import git_revision, library_versions, utc_now

log = logging.getLogger(__name__)

__all__ = ["VerifySettings", "verify", "REPORT_JSON", "REPORT_MD"]

REPORT_JSON = "verify.json"
REPORT_MD = "verify.md"
ONNX_NAME = "model.onnx"


@dataclass(frozen=True)
class VerifySettings:
    arch: Arch
    table: LatencyTable
    budget: Budget
    out_dir: Path
    checkpoint: str | None = None
    data: str | None = None
    force: bool = False  # measure on hardware that is not the table's
    rule: DeploymentRule = DeploymentRule()


def verify(settings: VerifySettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the checks; returns the report also written as ``verify.json`` / ``verify.md``."""
    say = progress or (lambda _: None)
    check_out_dir(settings.out_dir)
    if settings.data and not settings.checkpoint:
        raise EffNasError("--data evaluates trained weights and needs --checkpoint, but none was given; "
                          "pass --checkpoint DIR/checkpoint.pt")
    hardware = hardware_info()
    mismatch = _hardware_mismatch(settings.table, hardware, settings.force)
    model, weights = _trained_model(settings)
    data = _open_data(settings.data, weights["classes"]) if settings.data else None  # bad data fails before measuring
    say("exporting the fused model to ONNX")
    # fused in place: the model measured and evaluated below is the graph handed over. The ONNX file is
    # exported at the table's batch only where it is the thing timed; otherwise (torch, TensorRT) it is
    # the hand-over file at batch 1, not a batch-2048 graph checked in onnxruntime for nothing.
    onnx_batch = settings.table.runtime.batch_size if _deploys_onnx(settings.table) else 1
    onnx_path, onnx_diff = export_checked_onnx(model, settings.out_dir / ONNX_NAME, settings.arch.resolution,
                                               batch_size=onnx_batch, flag="--out")
    say(f"measuring on {settings.table.runtime.runtime} as table {settings.table.target!r} does")
    latency = _measure(model, onnx_path, settings)
    accuracy = None
    if data is not None:
        say(f"evaluating top-1 on {settings.data}")
        accuracy = _evaluate(model, data, settings, (weights.get("recipe") or {}).get("crop_pct"))
    report = _report(settings, hardware, mismatch, weights, onnx_path, onnx_diff, latency, accuracy)
    atomic_write_text(settings.out_dir / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    atomic_write_text(settings.out_dir / REPORT_MD, to_markdown(report))
    return report


def _deploys_onnx(table: LatencyTable) -> bool:
    from .latency.runtimes import runtime_class

    return runtime_class(table.runtime.runtime, table.runtime.device).artifact_suffix == ".onnx"


def _hardware_mismatch(table: LatencyTable, hardware: dict[str, Any], force: bool) -> str | None:
    from .latency.runtimes import runtime_class

    runtime = runtime_class(table.runtime.runtime, table.runtime.device)(table.runtime)
    try:
        table.check_hardware({**hardware, **runtime.hardware()}, runtime.identity_fields)
        return None
    except TableError as exc:
        if not force:
            raise TableError(f"{exc} (or pass --force to measure here anyway)") from None
        log.warning("FORCED: verifying on hardware that is not the table's: %s", exc)
        return str(exc)


def _trained_model(settings: VerifySettings) -> tuple[Any, dict[str, Any]]:
    from .model import build_model
    from .train.checkpoint import trained_model

    if settings.checkpoint is None:
        return build_model(settings.arch).eval(), {"checkpoint": None, "classes": None, "notes": ["random weights"]}
    model, checkpoint, notes = trained_model(settings.arch, settings.checkpoint)
    return model.eval(), {"checkpoint": str(settings.checkpoint), "classes": checkpoint.get("classes"),
                          "notes": notes, "num_classes": model.head.linear.out_features,
                          "trained_resolution": checkpoint.get("img_size"),
                          "recipe": checkpoint.get("settings", {}).get("recipe")}


def _measure(model: Any, onnx_path: Path, settings: VerifySettings) -> dict[str, Any]:
    """The handed-over file (or, for a runtime that deploys another format, the same fused model in
    it) judged against the budget beside the table's reference (and the budget's model)."""
    from .latency.runtimes import runtime_class

    table = settings.table
    shape = network_shape(settings.arch, table.runtime.batch_size)
    if _deploys_onnx(table):
        deployed = (onnx_path, shape)
    else:
        runtime = runtime_class(table.runtime.runtime, table.runtime.device)(table.runtime)
        deployed = (runtime.export(model, settings.out_dir / f"model{runtime.artifact_suffix}", shape), shape)
    judgement = judge(table.runtime, {"model": deployed}, {"model": [settings.budget]}, rule=settings.rule,
                      reference_ms=table.deployment_reference_ms)
    if judgement.run.failures:
        raise EffNasError(f"the model must run under {table.runtime.runtime} as deployed, but it failed: "
                          f"{judgement.run.failures['model']}; check --batch-size and the runtime")
    timing, verdict = judgement.run.timings["model"], judgement.verdicts["model"][settings.budget.label]
    machine = judgement.run.machine()
    return {"measured_ms": timing.latency_ms, "measured_p50_ms": timing.p50_ms, "measured_p90_ms": timing.p90_ms,
            "bursts": timing.bursts, "verdict": verdict.to_dict(), "machine": machine,
            "reference_at_build_ms": table.deployment_reference_ms,
            "reference_ratio": table.reference_ratio(machine["reference_ms"]),
            "statistic": f"the fast state: the {settings.rule.quantile:.0%} quantile of burst medians",
            "rule": settings.rule.to_dict()}


def _open_data(spec: str, classes: list[str] | None) -> Any:
    from .train.data import open_data

    data = open_data(spec)
    if classes is not None and list(data.classes) != list(classes):
        raise EffNasError(f"--data must have the classes the checkpoint was trained on ({len(classes)}: "
                          f"{', '.join(classes[:5])}...), but has {len(data.classes)}: "
                          f"{', '.join(data.classes[:5])}...; pass the data it was trained on")
    return data


def _evaluate(model: Any, data: Any, settings: VerifySettings, crop_pct: float | None) -> dict[str, Any]:
    """Top-1 of the fused model (the graph that was exported) on the held-out split, at the arch's size,
    with the evaluation crop the checkpoint was trained with."""
    import torch
    from torch.utils.data import DataLoader

    from .train.data import eval_transform
    from .train.recipe import recipe_for

    _, recipe = recipe_for("auto", settings.data)
    if crop_pct is not None:
        recipe = recipe.updated({"crop_pct": str(crop_pct)})
    data.val.transform = eval_transform(recipe, settings.arch.resolution)
    correct = 0
    device = next(model.parameters()).device  # the images go where the model is, whatever timed it
    with torch.no_grad():
        for images, targets in DataLoader(data.val, batch_size=64):
            correct += (model(images.to(device)).argmax(1).cpu() == targets).sum().item()
    return {"data": data.source, "val_images": len(data.val), "top1": 100.0 * correct / len(data.val),
            "resolution": settings.arch.resolution}


def _report(settings: VerifySettings, hardware: dict[str, Any], mismatch: str | None, weights: dict[str, Any],
            onnx_path: Path, onnx_diff: float, latency: dict[str, Any], accuracy: dict[str, Any] | None
            ) -> dict[str, Any]:
    table, arch = settings.table, settings.arch
    try:
        predicted = table.predict_ms(arch)
    except TableError as exc:  # outside the table's space: measured, but nothing to compare with
        predicted, latency["prediction_note"] = None, str(exc)
    measured, verdict = latency["measured_ms"], latency["verdict"]
    return {
        "verdict": "within budget" if verdict["within"] else "OVER BUDGET",
        "within_budget": verdict["within"],
        "judged_ms": measured,  # the figure the verdict compares with the budget: latency.measured_ms
        "budget": settings.budget.label,
        "budget_ms": verdict["budget_ms"],  # for a model budget: the model measured beside it, times the factor
        "predicted_ms": predicted,
        "measured_over_budget": verdict["share"],
        "measured_over_predicted": measured / predicted if predicted else None,
        "latency": latency,
        "accuracy": accuracy,
        "arch": arch.to_dict(),
        "arch_id": arch.arch_id,
        "name": arch.name,
        "target": table.target,
        "table_id": table.table_id,
        "runtime": table.runtime.to_dict(),
        "hardware": hardware,
        "forced_on_other_hardware": mismatch,
        "weights": weights,
        "onnx": {"path": str(onnx_path), "max_abs_diff_vs_torch": onnx_diff},
        "created": utc_now(),
        "git_revision": git_revision(),
        "versions": library_versions(),
    }


def to_markdown(report: dict[str, Any]) -> str:
    lat = report["latency"]
    rows = [
        ("verdict", f"**{report['verdict']}**"),
        ("budget", f"{report['budget']}: {report['budget_ms']:.3f} ms"
                   + (" (the model measured beside it)" if lat["verdict"]["model_ms"] is not None else "")),
        ("measured", f"{lat['measured_ms']:.3f} ms (the fast state of {lat['bursts']} bursts, deployment rule; "
                     f"median burst {lat['measured_p50_ms']:.3f} ms, p90 {lat['measured_p90_ms']:.3f} ms)"),
        ("measured / budget", f"{report['measured_over_budget']:.2f}"),
        ("predicted by the table", f"{report['predicted_ms']:.3f} ms" if report["predicted_ms"] else "n/a"),
        ("measured / predicted", f"{report['measured_over_predicted']:.2f}" if report["predicted_ms"] else "n/a"),
        ("the machine", f"reference x{lat['reference_ratio']:.3f} of the table's; moved {lat['machine']['moved']:.2f}x "
                        "during the measurement"),
    ]
    if report["accuracy"]:
        acc = report["accuracy"]
        rows.append(("top-1", f"{acc['top1']:.2f}% on {acc['val_images']} held-out images of {acc['data']} "
                              f"at {acc['resolution']} px"))
    weights = report["weights"]
    rows += [
        ("weights", f"{weights['checkpoint'] or 'random'}" + (f" ({'; '.join(weights['notes'])})"
                                                               if weights["notes"] and weights["checkpoint"] else "")),
        ("ONNX", f"{report['onnx']['path']} (max abs difference onnxruntime vs torch "
                 f"{report['onnx']['max_abs_diff_vs_torch']:.1e})"),
        ("target / runtime", f"{report['target']} ({report['table_id']}): {report['runtime']}"),
        ("hardware here", f"{report['hardware'].get('cpu_model')}, {report['hardware'].get('cores')} cores"),
    ]
    lines = [f"# verify {report['name'] or report['arch_id']} on {report['target']}", ""]
    if report["forced_on_other_hardware"]:
        lines += [f"> **FORCED on other hardware: these figures do not speak for the table's machine.** "
                  f"{report['forced_on_other_hardware']}", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
