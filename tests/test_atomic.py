"""Atomic writes: complete or untouched, never half written; permissions as a plain open() gives."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xbarsim.io.atomic import atomic_write, atomic_write_text
from xbarsim.network.weights import atomic_savez


def test_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        atomic_savez(tmp_path / "w.npz", {"x": np.arange(3)})
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.txt"
    atomic_write_text(path, "old")

    def broken(fh):
        fh.write("half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]
    atomic_write(tmp_path / "sub" / "b.bin", lambda fh: fh.write(b"\x00\x01"), mode="wb")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"


def test_reading_the_umask_never_changes_it(monkeypatch):
    """Issue 28: the umask was set to 0 and back around every write, so a file another thread
    created in that window got mode 0666. On Linux it is read from /proc, never set."""
    import xbarsim.io.atomic as atomic

    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc/self/status here")
    calls = []
    real = os.umask(0o022)
    os.umask(real)
    monkeypatch.setattr(atomic.os, "umask", lambda m: calls.append(m) or 0)
    assert atomic._umask() == real
    assert calls == []
