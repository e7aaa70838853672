"""Shared set-up of the Python tests: a temporary project with a profile.

The tests run against the installed package (the wheel), as a user's app
would: `.ci/python` builds it, installs it into a fresh virtualenv and runs
pytest here.
"""

import pathlib
import textwrap

import pytest


class Project:
    """A project folder ``src``, its backups ``dest`` and ``profile.toml``."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.src = root / "src"
        self.dest = root / "dest"
        self.profile = root / "profile.toml"
        self.src.mkdir()
        self.write_profile()

    def write_profile(self, extra: str = "") -> None:
        self.profile.write_text(
            textwrap.dedent(
                """\
                name = "Proj"
                source = "src"
                destination = "dest"
                """
            )
            + extra
        )

    def write(self, rel: str, text: str) -> None:
        p = self.src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def many_files(self, n: int) -> None:
        """``n`` small files in folders of 500."""
        for i in range(n):
            self.write(f"pkg{i // 500:03}/m{i:05}.py", f"x = {i}\n" * 8)

    def snapshots(self):
        if not self.dest.exists():
            return []
        return sorted(p.name for p in self.dest.iterdir() if p.name.startswith("Proj_backup_"))


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)
