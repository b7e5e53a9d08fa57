"""Run ``effnas`` as a user does (a real subprocess of the installed console script), or, for refusals,
its ``main`` in this process."""

from __future__ import annotations

import shutil
import subprocess
import sys


def effnas(*args: str, cwd=None) -> subprocess.CompletedProcess:
    script = shutil.which("effnas")
    command = [script] if script else [sys.executable, "-m", "effvit_nas.cli.main"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def effnas_here(*args: str) -> subprocess.CompletedProcess:
    """``effnas`` run inside this process: the same ``main`` and the same one-line contract (an escaped
    exception fails the test with its traceback), without a fresh interpreter importing torch and timm
    again, which costs seconds on every refusal. A refusal's stdout and stderr as ``effnas()`` gives them."""
    import contextlib
    import io

    from effvit_nas.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own refusals exit
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["effnas", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
