"""A path that is not a usable store: one clear line, exit status 2, the file untouched.

Each case runs `mkwritefs mount DIR --store PATH` and `mkwritefs fsck PATH` and checks
the file's bytes and mtime before and after (nothing mounted either)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from fusefs.cli.mount import find_mount
from fusefs.fs.store import FORMAT_VERSION
from tests.mount.support import cli

pytestmark = pytest.mark.mount


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, st.st_mode


def refuses(store: Path, mnt: Path, message: str, *, fsck_too: bool = True) -> None:
    before = fingerprint(store)
    mounted = cli("mount", str(mnt), "--store", str(store))
    assert mounted.returncode == 2, mounted.stderr
    lines = mounted.stderr.strip().splitlines()
    assert len(lines) == 1, mounted.stderr
    assert message in lines[0], mounted.stderr
    assert find_mount(os.path.realpath(mnt)) is None
    if fsck_too:
        checked = cli("fsck", str(store))
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert message in checked.stderr
    assert fingerprint(store) == before
    assert not Path(f"{store}-wal").exists()


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def test_not_a_store(tmp_path: Path, mnt: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"just some text, not a database\n" * 10)
    refuses(text, mnt, "not a mkwritefs store (not an SQLite database)")


def test_another_sqlite_database(tmp_path: Path, mnt: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    refuses(other, mnt, "not a mkwritefs store (an SQLite database of another kind)")


def test_newer_format(new_store, mnt: Path) -> None:
    store = new_store()
    with open(store, "r+b") as f:  # SQLite's user_version, at offset 60 of the header
        f.seek(60)
        f.write(struct.pack(">I", FORMAT_VERSION + 1))
    refuses(store, mnt, f"store format {FORMAT_VERSION + 1}, newer than this mkwritefs reads")


def test_missing(tmp_path: Path, mnt: Path) -> None:
    result = cli("mount", str(mnt), "--store", str(tmp_path / "nothing.db"))
    assert result.returncode == 2
    assert "no such store (create one with mkwritefs mkfs)" in result.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_read_only_file(new_store, mnt: Path) -> None:
    store = new_store()
    os.chmod(store, 0o444)
    refuses(store, mnt, "is read-only", fsck_too=False)
    checked = cli("fsck", str(store))  # checking only reads: allowed
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert cli("fsck", str(store), "--repair").returncode == 2


def test_in_use_by_a_mount(new_store, mount_store, tmp_path: Path) -> None:
    store = new_store()
    server = mount_store(store)
    (Path(server.mountpoint) / "f").write_bytes(b"data")
    other = tmp_path / "other"
    other.mkdir()
    result = cli("mount", str(other), "--store", str(store))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is in use by another mount (or fsck)")
    assert find_mount(str(other)) is None
    fsck = cli("fsck", str(store))
    assert fsck.returncode == 2
    assert "in use" in fsck.stderr
    assert (Path(server.mountpoint) / "f").read_bytes() == b"data"  # the mount is fine


def test_store_on_a_mkwritefs_mount(new_store, mount_factory, mnt: Path) -> None:
    """Its server would wait on itself: refused before anything is opened."""
    theirs = Path(mount_factory().mountpoint)
    inside = theirs / "store.db"
    shutil.copyfile(new_store(), inside)
    refuses(inside, mnt, "a store must live on another filesystem")
    made = cli("mkfs", str(theirs / "new.db"), "--size", "1M")
    assert made.returncode == 2
    assert "another filesystem" in made.stderr
    assert not (theirs / "new.db").exists()


def test_size_differs(new_store, mnt: Path) -> None:
    store = new_store("16M")
    before = fingerprint(store)
    result = cli("mount", str(mnt), "--store", str(store), "--size", "32M")
    assert result.returncode == 2
    assert "--size 32M differs from the store's size" in result.stderr
    assert fingerprint(store) == before


def test_mkfs_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_bytes(b"keep me")
    result = cli("mkfs", str(path), "--size", "1M")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert path.read_bytes() == b"keep me"
    assert cli("mkfs", str(tmp_path / "x.db"), "--size", "lots").returncode == 2
    assert not (tmp_path / "x.db").exists()
