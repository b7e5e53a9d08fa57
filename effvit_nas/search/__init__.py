"""Budgeted search: an Optuna study over a ``SearchSpace`` with latency budgets as constraints.

``run_search`` is what ``effnas search`` calls; the pieces (problem, backend, results) are usable
on their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EffNasError
from .optuna_backend import SAMPLERS, check_sampler, run_optuna
from .problem import Evaluation, SearchProblem, Target
from .results import best_per_budget, feasible_candidates, pareto_front, write_results

if TYPE_CHECKING:
    from .ray_backend import RaySettings

BACKENDS = ("optuna", "ray")

__all__ = ["SearchProblem", "Target", "Evaluation", "run_search", "prepare_out_dir", "SAMPLERS",
           "feasible_candidates", "pareto_front", "best_per_budget", "BACKENDS"]


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    """A fresh search needs an empty (or new) folder; a resumed one needs the old one."""
    if resume:
        if not (out_dir / "study.db").exists():
            raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but there is none; run without "
                              "--resume to start one")
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EffNasError(f"--out must be a new or empty folder, but {str(out_dir)!r} holds files; pass --resume to "
                          "continue the search there, or pick another --out")
    out_dir.mkdir(parents=True, exist_ok=True)


def run_search(
    problem: SearchProblem,
    out_dir: Path,
    *,
    trials: int,
    seed: int,
    sampler: str = "tpe",
    resume: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    backend: str = "optuna",
    ray: RaySettings | None = None,
) -> dict[str, Any]:
    """Search, then write the results; ``backend`` is ``optuna`` (in this process) or ``ray`` (Ray Tune)."""
    if backend not in BACKENDS:
        raise EffNasError(f"--backend must be one of {', '.join(BACKENDS)}, but got {backend!r}")
    if trials < 1:
        raise EffNasError(f"--trials must be at least 1, but got {trials}")
    check_sampler(sampler)  # before the out dir is touched
    prepare_out_dir(out_dir, resume)
    started = time.perf_counter()
    if backend == "ray":
        from .ray_backend import RaySettings, run_ray

        ray = ray or RaySettings()
        ray.check()
        study = run_ray(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume,
                        progress=progress, settings=ray)
    else:
        study = run_optuna(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume,
                           progress=progress)
    run_info = {"seed": seed, "sampler": sampler, "trials": trials, "resumed": resume, "backend": backend,
                "search_seconds": round(time.perf_counter() - started, 2)}
    if backend == "ray":
        run_info["ray"] = dataclasses.asdict(ray)
    return write_results(study, problem, out_dir, run_info)
