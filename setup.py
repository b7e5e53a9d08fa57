"""Build hooks: the wheel and the sdist carry the git revision they were built from.

Everything else about the package is in pyproject.toml. ``effnas --version`` and every saved result
record the revision; an installed copy has no .git to ask, so the build writes it into the package
as ``effvit_nas/_revision.txt`` (the sdist carries the file, so a wheel built from it keeps it).
"""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

REVISION_FILE = Path("effvit_nas") / "_revision.txt"


def checkout_revision() -> str | None:
    """HEAD of the checkout being built (``-dirty`` with uncommitted changes), or None outside one."""
    if not Path(".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        revision = checkout_revision()
        if revision is not None:  # from an sdist, its own _revision.txt was copied as package data
            target = Path(self.build_lib) / REVISION_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(revision + "\n")


class SdistWithRevision(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        revision = checkout_revision()
        if revision is not None:
            target = Path(base_dir) / REVISION_FILE
            target.unlink(missing_ok=True)  # may be a hard link into the checkout
            target.write_text(revision + "\n")


setup(cmdclass={"build_py": BuildPyWithRevision, "sdist": SdistWithRevision})
