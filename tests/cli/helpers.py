"""Run ``effnas`` as a user does: a real subprocess of the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys


def effnas(*args: str, cwd=None) -> subprocess.CompletedProcess:
    script = shutil.which("effnas")
    command = [script] if script else [sys.executable, "-m", "effvit_nas.cli.main"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
