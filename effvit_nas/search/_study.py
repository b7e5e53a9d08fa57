"""What every backend's study has in common: where it lives, its name, its samplers, its labels, and
which of its trials count as finished."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from ..errors import EffNasError, UnknownNameError

if TYPE_CHECKING:
    from .problem import SearchProblem

__all__ = ["STUDY_NAME", "SAMPLERS", "FAIL_REASON", "STUDY_FILE", "open_storage", "quiet_optuna", "check_sampler",
           "make_sampler", "create_study", "drop_torn_record", "check_resumed_study", "started_with", "is_finished",
           "finished_count", "fail_unfinished"]

# One fixed name: the folder names the run, and --resume (or optuna-dashboard) finds the study
# without knowing the arguments it was started with. What the run is goes in the study's user attrs.
STUDY_NAME = "effnas"
FAIL_REASON = "fail_reason"  # user attr of a trial the estimator could not score
UNSCORED_ATTR = "unscored"  # user attr of a proposal told infeasible without a score (over its phase's limit)
AIM_ATTR = "aim_ms"  # user attr: the budget a trial's phase aimed at (what it was held to, what a resume counts)
STOPPED_SHORT_ATTR = "stopped_short"  # study attr: the proposals ran out before --trials candidates were scored
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=40),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


# An append-only journal, not SQLite: adding a finished trial costs one append (~2 ms) where Optuna's
# SQLite storage queried and committed per parameter (~100 ms a trial, growing with the study).
STUDY_FILE = "study.journal"


def open_storage(out_dir: Path, file_name: str = STUDY_FILE) -> optuna.storages.JournalStorage:
    """The storage of the study in ``out_dir`` (optuna-dashboard opens the same file)."""
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str((out_dir / file_name).resolve())))


def drop_torn_record(out_dir: Path, file_name: str = STUDY_FILE) -> str | None:
    """Cut off a journal's torn last record; returns what was dropped (None when the journal is whole).

    Each record is one JSON line, appended whole: a power cut or a full disk mid-append leaves a last line
    that is not JSON (or not ended), which Optuna's replay cannot read (it fails with an AttributeError).
    Every line before it is a whole record, so the study up to it is intact; the record cut short was
    the last trial's last step, and that trial (left running) is failed and run again on resume."""
    path = out_dir / file_name
    data = path.read_bytes()
    body = data[:-1] if data.endswith(b"\n") else data
    last = body[body.rfind(b"\n") + 1:]
    if not data or _is_json(last):
        if data and not data.endswith(b"\n"):  # the record whole, only its line end lost
            with path.open("ab") as journal:
                journal.write(b"\n")
        return None
    with path.open("r+b") as journal:
        journal.truncate(len(body) - len(last))
    return (f"the study journal {str(path)!r} ended in a torn record ({len(last)} bytes, cut short while being "
            "written); it was dropped and every complete trial kept")


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE and metric names are marked experimental; the first handles the space's coupled knobs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise UnknownNameError(f"sampler must be one of {sorted(SAMPLERS)}, but got {name!r}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    check_sampler(name)
    return SAMPLERS[name](seed)


def create_study(problem: SearchProblem, out_dir: Path | None, *, sampler: str, seed: int,
                 backend: str) -> optuna.Study:
    """A new study in ``out_dir`` (None: in memory), labelled so that optuna-dashboard (which reads the
    study as it is) shows what its two objectives are and what the run searched.

    The file is created and labelled under a temporary name and renamed into place: another process
    that opens the study file (a status check, a dashboard) while the search starts would otherwise
    find a study without labels."""
    if out_dir is None:
        return _labelled(optuna.create_study(sampler=make_sampler(sampler, seed), directions=["maximize", "minimize"]),
                         problem, sampler=sampler, seed=seed, backend=backend)
    final = out_dir / STUDY_FILE
    building = out_dir / f"{STUDY_FILE}.creating"
    building.unlink(missing_ok=True)  # left by a process killed while creating
    storage = open_storage(out_dir, building.name)
    _labelled(optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=["maximize", "minimize"]),
              problem, sampler=sampler, seed=seed, backend=backend)
    os.replace(building, final)
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out_dir), sampler=make_sampler(sampler, seed))


def _labelled(study: optuna.Study, problem: SearchProblem, *, sampler: str, seed: int, backend: str) -> optuna.Study:
    study.set_metric_names(["score", f"latency_ms:{problem.primary.name}"])  # what "score" is: user attr "score"
    for key, value in run_attrs(problem, sampler=sampler, seed=seed, backend=backend).items():
        study.set_user_attr(key, value)
    return study


def run_attrs(problem: SearchProblem, *, sampler: str, seed: int, backend: str) -> dict[str, Any]:
    budgets = "; ".join(f"{t.name} under {', '.join(t.label(b) for b in t.budgets_ms)}" for t in problem.targets)
    return {
        "run": f"{problem.space.name}: {budgets}, by {problem.estimator.name}, {sampler} seed {seed}, {backend}",
        "space": problem.space.name,
        "budgets_ms": {t.name: list(t.budgets_ms) for t in problem.targets},
        "margin": {t.name: t.margin for t in problem.targets},
        "confidence": {t.name: t.confidence for t in problem.targets},
        "estimator": problem.estimator.name,
        "score": problem.estimator.score_label,
        "sampler": sampler,
        "seed": seed,
        "backend": backend,
        "seed_with_references": problem.seed_with_references,
    }


# What a resumed search must keep: trials scored or constrained otherwise would be mixed with the new
# ones in one Pareto front. Sampler and seed may change (they only choose what to try next).
RESUME_KEEPS = ("space", "budgets_ms", "margin", "confidence", "estimator", "seed_with_references")


def check_resumed_study(out_dir: Path, problem: SearchProblem) -> None:
    """Refuse, in one line, a ``--resume`` whose space, budgets, margin, confidence or estimator differ
    from the ones the study in ``out_dir`` was started with."""
    try:
        stored = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out_dir)).user_attrs
    except KeyError:
        raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but its study file holds none; run without "
                          "--resume to start one") from None
    # through JSON, as the study stored them (tuples become lists, keys strings)
    now = json.loads(json.dumps(run_attrs(problem, sampler="", seed=0, backend="")))
    changed = [f"{key} was {stored[key]!r}, now {now[key]!r}" for key in RESUME_KEEPS
               if key in stored and stored[key] != now[key]]
    if changed:
        raise EffNasError(f"--resume must continue the search with its settings, but {'; '.join(changed)}; "
                          "repeat the first command's flags with --resume, or start a new --out")


def started_with(out_dir: Path, key: str) -> Any:
    """The run attribute ``key`` (``run_attrs``) the study in ``out_dir`` was started with; None when there
    is no study or it does not record it."""
    if not (out_dir / STUDY_FILE).exists():
        return None
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out_dir)).user_attrs.get(key)
    except KeyError:
        return None


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Complete, pruned, or failed with a reason from the estimator: each counts toward ``trials``.
    A trial failed without a reason was interrupted (a kill, a Ctrl-C) and runs again on resume."""
    state = optuna.trial.TrialState
    return trial.state in (state.COMPLETE, state.PRUNED) or (trial.state == state.FAIL and FAIL_REASON in
                                                             trial.user_attrs)


def finished_count(study: optuna.Study) -> int:
    return sum(is_finished(t) for t in study.get_trials(deepcopy=False))


def fail_unfinished(study: optuna.Study) -> None:
    """Tell the trials a killed process left RUNNING as failed (no reason: they did not finish)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
