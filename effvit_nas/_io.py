"""Small file helpers shared by every module that reads or writes user files.

Reading: parse once, reject unknown keys, check ``schema_version``, and turn every failure into a
one-line ``ConfigFileError``. Writing: temp file then ``os.replace``, so an interrupted write never
leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigFileError

__all__ = ["atomic_path", "atomic_write_text", "check_keys", "check_out_dir", "check_out_file", "load_yaml_mapping",
           "parse_like"]


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


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder a command will write into: new, or an existing folder. A file in its place, or on the
    way to it, is refused before any work starts (else the first write fails after the work)."""
    path = Path(path)
    _check_on_the_way(path, flag)
    if path.exists() and not path.is_dir():
        raise ConfigFileError(f"{flag} must be a folder (new or existing), but {str(path)!r} is a file; "
                              f"choose another {flag} or move the file")
    return path


def check_out_file(path: str | os.PathLike, flag: str, *, overwrite: bool = True) -> Path:
    """A file a command will write: not a folder, in a folder that is new or exists; an existing file
    is refused unless ``overwrite``."""
    path = Path(path)
    _check_on_the_way(path, flag)
    if path.is_dir():
        raise ConfigFileError(f"{flag} must name a file, but {str(path)!r} is a folder; add a file name to it")
    if path.exists() and not overwrite:
        raise ConfigFileError(f"{flag} must name a file that does not exist yet, but {str(path)!r} exists; "
                              f"choose another {flag} or delete it")
    return path


def _check_on_the_way(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` must be a folder, so that ``mkdir(parents=True)`` works."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigFileError(f"{flag} must lie in a folder, but {str(parent)!r} on the way to "
                                      f"{str(path)!r} is a file; choose another {flag}")
            return


def _default_file_mode() -> int:
    mask = os.umask(0)  # the only way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to fill. When the block ends normally it replaces
    ``path`` in one step, so readers see the old file or the new one, never a torn one; when it raises,
    it is removed. The file gets the permissions a plain ``open`` would give (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``atomic_path``), flushed to disk before it replaces the old file."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


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
