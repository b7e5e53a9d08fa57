"""The backend plug-in point: one abstract method, a registry, a factory (as for estimators).

A backend runs the trials of a ``SearchProblem`` and leaves them in an Optuna study in the output
folder; everything after (results, plots, resume checks) reads that study, so a backend is one file
that registers itself. A backend with a heavy dependency registers by module name instead
(``register_lazy_backend``): listing the backends, or importing ``effvit_nas``, must not import Ray.
"""

from __future__ import annotations

import abc
import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._progress import Progress
from ..errors import UnknownNameError

if TYPE_CHECKING:
    import optuna

    from .problem import SearchProblem

__all__ = ["SearchBackend", "BACKENDS", "DEFAULT_BACKEND", "register_backend", "register_lazy_backend",
           "create_backend", "Progress"]

# name -> the class, or the module that defines it (imported on first use, which registers the class)
BACKENDS: dict[str, type[SearchBackend] | str] = {}
DEFAULT_BACKEND = "optuna"


class SearchBackend(abc.ABC):
    """Runs (or continues) a search until the study in ``out_dir`` holds ``trials`` finished trials.

    Finished means complete, pruned, or failed because the estimator could not score the arch
    (told as FAIL with the reason in the trial's ``fail_reason`` user attribute). Options are
    keyword-only constructor arguments, checked when the backend is built, before any folder is
    touched."""

    name: str = ""
    description: str = ""

    @abc.abstractmethod
    def run(self, problem: SearchProblem, out_dir: Path, *, trials: int, seed: int, sampler: str = "tpe",
            resume: bool = False, progress: Progress | None = None) -> optuna.Study:
        """Search; the study it returns holds every trial, in the output folder's study file (``STUDY_FILE``)."""

    def describe(self) -> dict[str, Any]:
        """The backend's settings, recorded in metadata.json (empty when it has none)."""
        return {}


def register_backend(cls: type[SearchBackend]) -> type[SearchBackend]:
    BACKENDS[cls.name] = cls
    return cls


def register_lazy_backend(name: str, module: str) -> None:
    """Register ``name`` as defined in ``module``, imported when the backend is first built."""
    BACKENDS.setdefault(name, module)


def backend_class(name: str) -> type[SearchBackend]:
    if name not in BACKENDS:
        raise UnknownNameError(f"--backend must be one of {', '.join(sorted(BACKENDS))}, but got {name!r}")
    entry = BACKENDS[name]
    if isinstance(entry, str):
        importlib.import_module(entry)  # its @register_backend replaces the module name with the class
        entry = BACKENDS[name]
        if isinstance(entry, str):
            raise RuntimeError(f"module {entry} must register backend {name!r}, but did not")
    return entry


def create_backend(name: str | None = None, **options: Any) -> SearchBackend:
    """The backend registered as ``name`` (None: the default), built with ``options``."""
    cls = backend_class(name or DEFAULT_BACKEND)
    accepted = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UnknownNameError(f"backend {cls.name!r} options must be among {sorted(accepted) or 'none'}, but got "
                               f"{', '.join(unknown)}")
    return cls(**options)
