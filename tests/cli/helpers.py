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
    exception fails the test with its traceback; a Python warning is written to stderr as a user would
    see it), without a fresh interpreter importing torch and timm again, which costs seconds on every
    refusal. Output a C library writes to file descriptor 2 is not seen: each command keeps one refusal
    test through ``effnas()``, a real process."""
    import contextlib
    import io
    import logging
    import warnings

    from effvit_nas.cli.main import main

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("effvit_nas")]
    saved = [(lg, list(lg.handlers), lg.level) for lg in loggers]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # what a fresh interpreter shows, no more (Python's own filters):
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", hidden)
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's own refusals exit
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    finally:  # the CLI points its loggers at this call's stderr: put them back as they were
        for lg, handlers, level in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
        for name in list(logging.root.manager.loggerDict):
            lg = logging.getLogger(name)
            if name.startswith("effvit_nas") and lg not in loggers:
                lg.handlers.clear()
                lg.setLevel(logging.NOTSET)
    return subprocess.CompletedProcess(["effnas", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
