"""What every saved result records about where it came from: git revision and library versions.

The revision is read from git in a source checkout; an installed wheel carries the one it was built
from in ``_revision.txt`` (written by the build, see setup.py)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

__all__ = ["git_revision", "library_versions", "utc_now", "version_line"]

_PACKAGES = ("effvit-nas", "torch", "onnxruntime", "openvino", "onnx", "optuna", "numpy", "timm")


_REVISION_FILE = "_revision.txt"


def git_revision() -> str:
    """The commit this code is (``-dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # an installed copy: never ask an unrelated repository it happens to sit in
        built = Path(__file__).resolve().parent / _REVISION_FILE
        return built.read_text().strip() if built.is_file() else "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def version_line() -> str:
    """What ``effnas --version`` prints."""
    try:
        version = metadata.version("effvit-nas")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return f"effnas {version} (git {git_revision()})"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp() -> dict[str, object]:
    """When, from which revision and with which libraries a result file was written."""
    return {"written_at": utc_now(), "git_revision": git_revision(), "versions": library_versions()}
