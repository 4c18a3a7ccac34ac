"""Shared fixtures: real FUSE mounts driven by real processes (helpers in mountlib.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mountlib import make_project, mount_source, unmount


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path / "src")


@pytest.fixture
def mounted(project, tmp_path):
    """The sample project mounted at tmp_path/mnt by a real daemon."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(project, mp)
    try:
        yield m
    finally:
        unmount(m)


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    """Keep the state directories of non-git sources inside the test's tmp dir."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
