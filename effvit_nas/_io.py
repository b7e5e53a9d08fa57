"""Small file helpers shared by every module that reads or writes user files.

Reading: parse once, reject unknown keys, check ``schema_version``, and turn every failure into a
one-line ``ConfigFileError``. Writing: temp file then ``os.replace``, so an interrupted write never
leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigFileError

__all__ = ["atomic_write_text", "check_keys", "load_yaml_mapping", "parse_like"]


def load_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Parse a YAML file whose top level must be a mapping; ``what`` names it in errors."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileError(f"{what} file must exist, but {str(path)!r} was not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{what} file must be a readable text file, but {str(path)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigFileError(f"{what} file {str(path)!r} must be valid YAML, but it fails{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{what} file {str(path)!r} must hold a mapping of keys to values, but holds {type(data).__name__}"
        )
    return data


def check_keys(
    data: Mapping[str, Any], *, allowed: Iterable[str], required: Iterable[str], where: str
) -> None:
    """Reject unknown keys (typos would otherwise be silently ignored) and missing required ones."""
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigFileError(
            f"{where} may only have the keys {sorted(allowed)}, but has unknown key(s) {unknown}; "
            "remove or rename them"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigFileError(f"{where} must have the keys {missing}, but they are missing")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_like(text: str, example: Any) -> Any:
    """Command-line text as the type of ``example`` (bool, a tuple of floats, or a scalar type).
    Raises ValueError whose message names the expected kind, for the caller's one-line error."""
    if isinstance(example, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("true or false")
        return text.lower() in ("true", "1", "yes")
    kind = "numbers like 0.5,1" if isinstance(example, tuple) else type(example).__name__
    try:
        if isinstance(example, tuple):
            return tuple(float(v) for v in text.split(","))
        return type(example)(text)
    except ValueError:
        raise ValueError(kind) from None
