"""The repository keeps its promises to a newcomer: the README's commands, CI running exactly the
README's test command, and ruff-clean code."""

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The first two shell commands of README.md (the first fenced block holds them)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_the_install_and_test_commands():
    install_and_run, test = readme_commands()[:2]
    # a user's install is a wheel built from the folder, not an editable checkout
    assert install_and_run.startswith("pip install . && effnas search ") and "-e" not in install_and_run.split()
    assert "pytest" in test


def readme_synopsis() -> dict[tuple[str, ...], set[str]]:
    """The flags the README's "Command line" block gives each command (a command may take several lines)."""
    from effvit_nas.cli.main import build_parser

    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```\n", 2)[1]
    flags: dict[tuple[str, ...], set[str]] = {}
    current: tuple[str, ...] | None = None
    for line in block.splitlines():
        for part in line.split("#", 1)[0].split(" | "):  # "effnas table runtimes | effnas table list"
            words = part.split()
            if not words:
                continue
            if words[0] in ("effnas", "torchrun"):
                current = _command_of(build_parser(), words[1:]) if words[0] == "effnas" else None
                flags.setdefault(current, set())
            if current is not None:
                flags[current] |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", part))
    flags.pop(None, None)
    return flags


def _command_of(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, ...]:
    command: list[str] = []
    while words and (sub := _subparsers(parser)) and words[0] in sub.choices:
        command.append(words[0])
        parser, words = sub.choices[words[0]], words[1:]
    return tuple(command)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def parser_flags() -> dict[tuple[str, ...], set[str]]:
    """Every command (top level included) with the long flags its parser takes."""
    from effvit_nas.cli.main import build_parser

    found: dict[tuple[str, ...], set[str]] = {}

    def walk(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
        found[command] = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
        sub = _subparsers(parser)
        for name, child in (sub.choices.items() if sub else ()):
            walk(child, (*command, name))

    walk(build_parser(), ())
    return {command: flags for command, flags in found.items()
            if flags or not _subparsers_of(command)}


def _subparsers_of(command: tuple[str, ...]) -> bool:
    """Whether ``command`` only groups others (``effnas table``): it has no synopsis line of its own."""
    from effvit_nas.cli.main import build_parser

    parser = build_parser()
    for word in command:
        parser = _subparsers(parser).choices[word]
    return _subparsers(parser) is not None


def test_the_readmes_command_line_block_gives_every_flag_of_every_command_and_no_other():
    documented, actual = readme_synopsis(), parser_flags()
    assert set(documented) == set(actual), "commands without a line, or lines without a command"
    for command, flags in actual.items():
        name = " ".join(("effnas", *command))
        assert flags - documented[command] == set(), f"{name}: flags the README does not give"
        assert documented[command] - flags == set(), f"{name}: flags the README gives that it does not take"


def test_ci_runs_exactly_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff comes with the dev extra")
def test_ruff_is_clean():
    result = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_gpu_check_stops_cleanly_where_torch_sees_no_gpu(tmp_path):
    """CI has no GPU: the check must say so in one line, exit 0, and write nothing (no results folder, no
    table) — a machine without a GPU is not a failed check. The GPU is hidden where there is one."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RESULTS": str(tmp_path / "results")}
    tables = ROOT / "effvit_nas" / "latency" / "tables"
    before = sorted(p.name for p in tables.iterdir())
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    # torch imported and answered (its version follows): not a check that stopped because python or torch failed
    assert re.match(r"gpu_check: torch sees no CUDA GPU: nothing to check here \(torch \d+\.\d+", result.stdout)
    assert not (tmp_path / "results").exists() and sorted(p.name for p in tables.iterdir()) == before
