"""The kernel caches aggressively (long timeouts, keep_cache); changes that do
not come through the kernel must still be seen at once."""
from __future__ import annotations

import pytest

from mountlib import require_fuse, run
from vfs.daemon import InProcessMount, MountOptions


@pytest.fixture
def inproc(project, tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = InProcessMount(MountOptions(str(project), str(mp))).start()
    try:
        yield m, mp
    finally:
        m.stop()
        run(["fusermount3", "-uz", str(mp)], check=False)


def test_api_write_seen_by_cat_immediately(inproc):
    m, mp = inproc
    session = m.ws.session
    # Warm the kernel's page cache and attribute cache first.
    assert run(["cat", str(mp / "data" / "notes.txt")]).stdout == "alpha\nbeta\ngamma\n"
    for i in range(20):
        text = f"version {i}\n" * (i + 1)
        session.write_file("data/notes.txt", text.encode())
        session.wait_invalidations()
        assert run(["cat", str(mp / "data" / "notes.txt")]).stdout == text
    assert (m.ws.source and open(f"{m.ws.source}/data/notes.txt").read()) == "alpha\nbeta\ngamma\n"


def test_api_create_and_delete_seen_by_ls(inproc):
    m, mp = inproc
    session = m.ws.session
    assert "new.txt" not in run(["ls", str(mp / "data")]).stdout
    assert run(["cat", str(mp / "data" / "new.txt")], check=False).returncode != 0  # negative entry cached
    session.write_file("data/new.txt", b"fresh\n")
    session.wait_invalidations()
    assert run(["cat", str(mp / "data" / "new.txt")]).stdout == "fresh\n"
    assert "new.txt" in run(["ls", str(mp / "data")]).stdout
    session.delete_path("data/new.txt")
    session.wait_invalidations()
    assert run(["cat", str(mp / "data" / "new.txt")], check=False).returncode != 0
    session.rename_path("data/notes.txt", "data/renamed.txt")
    session.wait_invalidations()
    assert run(["cat", str(mp / "data" / "renamed.txt")]).stdout == "alpha\nbeta\ngamma\n"
    assert run(["cat", str(mp / "data" / "notes.txt")], check=False).returncode != 0
    session.check_invariants()
