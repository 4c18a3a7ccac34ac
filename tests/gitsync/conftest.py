"""Fixtures for gitsync tests: real repositories made with the git CLI.

Every test runs with HOME and XDG_CONFIG_HOME pointing into its tmp_path and
with the system git config disabled, so the user's git configuration (ignore
files, default branch, hooks) cannot change what the tests see.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


class Git:
    """Runs the git CLI in one directory (or with --git-dir for bare repos)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        return self.run(*args, input=input, check=check).stdout.decode()

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=self.cwd, input=input, capture_output=True, check=check)

    def bytes(self, *args: str) -> bytes:
        return self.run(*args).stdout

    def sha(self, rev: str) -> str:
        return self("rev-parse", "--verify", "-q", rev).strip()

    def write(self, files: dict[str, bytes]) -> None:
        """Write `files` (relative path -> content) under the worktree."""
        for rel, content in files.items():
            p = self.cwd / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)

    def commit_all(self, message: str) -> str:
        """`git add -A && git commit`; returns the new HEAD sha."""
        self("add", "-A")
        self("commit", "-q", "-m", message)
        return self.sha("HEAD")


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    for var, value in {
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.com",
    }.items():
        monkeypatch.setenv(var, value)


def init_repo(path: Path, files: dict[str, bytes] | None = None, *, message: str = "initial") -> Git:
    """`git init -b main` at `path`, write `files`, and commit them if any."""
    path.mkdir(parents=True, exist_ok=True)
    git = Git(path)
    git("init", "-q", "-b", "main")
    if files:
        git.write(files)
        git.commit_all(message)
    return git


@pytest.fixture
def make_repo(tmp_path: Path):
    """Factory: make_repo(files, name="repo") -> (path, Git)."""

    def make(files: dict[str, bytes] | None = None, name: str = "repo") -> tuple[Path, Git]:
        path = tmp_path / name
        return path, init_repo(path, files)

    return make
