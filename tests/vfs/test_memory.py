"""The LRU cap on clean buffers (`max_memory_mb`): clean buffers are dropped, dirty ones never."""
from __future__ import annotations

import json

from mountlib import make_project, mount_source, run, unmount


def test_clean_buffers_are_capped_and_dirty_ones_kept(tmp_path):
    files = {f"data/f{i:03}.bin": (chr(65 + i % 26) * 100_000) for i in range(60)}  # 6 MB
    src = make_project(tmp_path / "src", files)
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp, "--set", "max_memory_mb=1")
    try:
        # Dirty a few files first: they must survive any amount of reading.
        for i in range(3):
            (mp / f"data/f{i:03}.bin").write_text(f"edited {i}\n")
        for _ in range(2):
            for i in range(60):
                expected = f"edited {i}\n" if i < 3 else chr(65 + i % 26) * 100_000
                # O_DIRECT-free reads through a fresh process: contents must be exact.
                assert run(["cat", str(mp / f"data/f{i:03}.bin")]).stdout == expected
        status = json.loads((mp / ".vfs" / "status.json").read_text())
        mem = status["memory"]
        assert mem["max_clean_bytes"] == 1 << 20
        assert mem["clean_bytes"] <= 1 << 20
        assert mem["evictions"] > 0
        assert status["changed"] == 3
        for i in range(3):
            assert (mp / f"data/f{i:03}.bin").read_text() == f"edited {i}\n"
    finally:
        unmount(m)


def test_a_file_past_max_file_mb_gets_efbig(tmp_path):
    """Regression: `truncate -s 1G` in the mount allocated the whole gigabyte in the daemon,
    then failed with EIO when the journal refused the blob.  A memory file is held whole, so
    past `max_file_mb` it gets EFBIG at once, like a file system past its maximum file size."""
    src = make_project(tmp_path / "src", {"a.txt": "a\n"})
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp, "--set", "max_file_mb=1")
    try:
        res = run(["truncate", "-s", "2M", str(mp / "big")], check=False)
        assert res.returncode != 0 and "File too large" in res.stderr
        res = run(["dd", "if=/dev/zero", f"of={mp / 'big2'}", "bs=64k", "count=32"], check=False)
        assert res.returncode != 0 and "File too large" in res.stderr
        run(["truncate", "-s", "1M", str(mp / "fits")])
        assert (mp / "fits").stat().st_size == 1 << 20
        assert (mp / "a.txt").read_text() == "a\n"  # still serving
        res = run(["truncate", "-s", "1G", str(mp / "huge")], check=False)  # at once, no gigabyte held
        assert res.returncode != 0 and "File too large" in res.stderr
    finally:
        unmount(m)
