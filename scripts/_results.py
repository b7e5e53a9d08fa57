"""Where benchmark scripts put their figures: small JSON files in docs/results/, committed beside
the docs that quote them, each with the provenance a reader needs to trust or redo it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from effvit_nas._io import atomic_write_text
from effvit_nas.provenance import git_revision, library_versions, utc_now

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results"


def save_result(name: str, command: str, figures: dict[str, Any]) -> Path:
    """Write ``docs/results/<name>.json`` (atomically) and return its path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": command, **figures, "created": utc_now(), "git_revision": git_revision(),
              "versions": library_versions()}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def run_timed(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` as a user would (its own process, output captured); return it and its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return done, time.perf_counter() - started
