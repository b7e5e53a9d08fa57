"""Entry point of ``effnas``. Registers the commands and turns user errors into one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from ..errors import EffNasError
from ..provenance import version_line
from . import arch_cmd, export_cmd, search_cmd, space_cmd, supernet_cmd, table_cmd, train_cmd, verify_cmd
from ._common import flush_notes

# Each module has ``register(subparsers)``, which sets ``handler`` on its parsers.
COMMANDS: tuple[ModuleType, ...] = (search_cmd, table_cmd, export_cmd, train_cmd, verify_cmd, supernet_cmd, arch_cmd,
                                     space_cmd)
USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
BROKEN_PIPE = 141  # the shell's code for a process stopped by SIGPIPE


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on a bad flag; a user needs the one line that says what is wrong."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(USAGE_ERROR)


class PrintVersion(argparse.Action):
    """``--version``, read only when asked (asking git costs a process on every run otherwise)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="effnas",
        description="Hardware-aware architecture search for EfficientViT (Liu et al., CVPR 2023).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--version", action=PrintVersion, nargs=0,
                        help="print the version and the git revision it was built from, and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return USAGE_ERROR if args.command is None else 0
    try:
        code = int(handler(args) or 0)
        flush_notes()
        return code
    except EffNasError as exc:
        flush_notes(print_them=False)  # a refusal is one line
        if args.debug:
            raise
        sys.stderr.write(f"effnas: error: {exc}\n")
        return USAGE_ERROR
    except (KeyboardInterrupt, Exception) as exc:
        # a Ctrl-C that lands inside a C extension's import (matplotlib's, when the first plot is
        # drawn) surfaces as the ImportError it caused: still the user's interrupt
        if not _caused_by_interrupt(exc):
            raise
        hint = "rerun it with --resume" if hasattr(args, "resume") else "rerun the same command"
        sys.stderr.write(f"effnas: interrupted; what finished is saved, {hint} to continue\n")
        return INTERRUPTED


def _caused_by_interrupt(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run() -> None:
    """Console entry point: ``main()`` and exit with its code."""
    try:
        code = main()
    except BrokenPipeError:
        # the reader went away (``effnas table list | head``): what it wanted was printed; stay quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(BROKEN_PIPE)
    if code == INTERRUPTED:
        # After a Ctrl-C, torch's and OpenMP's worker threads can still be inside a call while the
        # interpreter tears down, which can abort the process ("Fatal Python error: PyThreadState_Get").
        # Everything worth keeping is already on disk (every write is atomic), so skip the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
