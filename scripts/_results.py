"""Where benchmark scripts put their figures: small JSON files in docs/results/, committed beside
the docs that quote them, each with the provenance a reader needs to trust or redo it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from effvit_nas._io import atomic_write_text
from effvit_nas.provenance import git_revision, library_versions, utc_now

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "docs" / "results"


def save_result(name: str, command: str, figures: dict[str, Any]) -> Path:
    """Write ``docs/results/<name>.json`` (atomically) and return its path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": command, **figures, "created": utc_now(), "git_revision": git_revision(),
              "versions": library_versions()}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


@contextlib.contextmanager
def checked_out(revision: str, parent: Path) -> Iterator[Path]:
    """``revision`` checked out into a temporary git worktree under ``parent`` (an earlier revision to run
    beside this checkout), removed afterwards."""
    tree = parent / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)


def run_timed(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` as a user would (its own process, output captured); return it and its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return done, time.perf_counter() - started
