"""Where effvit-nas reads and writes: what ships inside the package, and the user's own folder.

The search spaces and the latency tables measured for this release are package data: they are read
from the installed package (``importlib.resources``), so a wheel works from any folder. What a user
makes (a table built or adapted on their machine) goes to their own folder, ``EFFNAS_HOME``
(default: the platform's per-user data folder), never into the installed package: site-packages
may be read-only, shared between users, or replaced by the next upgrade.
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

from .errors import EffNasError

__all__ = ["SHIPPED_SPACES_DIR", "SHIPPED_TABLES_DIR", "effnas_home", "user_tables_dir", "refuse_package_path",
           "HOME_VARIABLE"]

HOME_VARIABLE = "EFFNAS_HOME"
_PACKAGE = Path(str(files("effvit_nas")))  # installed wheels are plain folders: the data files are real files
SHIPPED_SPACES_DIR = _PACKAGE / "spaces"
SHIPPED_TABLES_DIR = _PACKAGE / "latency" / "tables"


def effnas_home() -> Path:
    """``$EFFNAS_HOME``, or the per-user data folder: ``$XDG_DATA_HOME/effvit-nas`` (default
    ``~/.local/share/effvit-nas``) on Linux, ``~/Library/Application Support/effvit-nas`` on macOS,
    ``%LOCALAPPDATA%\\effvit-nas`` on Windows."""
    given = os.environ.get(HOME_VARIABLE)
    if given:
        return Path(given).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "effvit-nas"


def user_tables_dir() -> Path:
    """The folder ``table build`` and ``table adapt`` write a ``--target NAME`` to (made when first written)."""
    return effnas_home() / "tables"


def _is_source_checkout() -> bool:
    """A checkout (``pip install -e``) keeps the package beside its pyproject.toml; an installed copy does not."""
    return (_PACKAGE.parent / "pyproject.toml").is_file()


def refuse_package_path(path: Path, what: str) -> None:
    """Refuse to write ``path`` inside an installed effvit-nas: one line naming the user's folder instead.

    In a source checkout the shipped tables are files of the project, rebuilt by path on purpose."""
    if _is_source_checkout():
        return
    resolved = path.resolve()
    if resolved == _PACKAGE or _PACKAGE in resolved.parents:
        raise EffNasError(f"{what} must be written outside the installed effvit-nas package, but {str(path)!r} lies "
                          f"inside it ({_PACKAGE}); give a name (it goes to {user_tables_dir()}) or a path elsewhere")
