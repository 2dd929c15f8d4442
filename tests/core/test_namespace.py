"""Names: lookup, create, link, unlink, rmdir, rename (with flags), readdir, forget."""

from __future__ import annotations

import errno
import stat

import pytest

from fusefs.fs.core import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ROOT_INO,
    Ctx,
    Filesystem,
    FsError,
)

from .conftest import ROOT, USER, create


def err(exc: pytest.ExceptionInfo[FsError]) -> int:
    return exc.value.errno


def names(fs: Filesystem, ino: int) -> list[bytes]:
    fh = fs.opendir(ino, ROOT)
    try:
        return [name for name, _, _ in fs.readdir(fh, 0)]
    finally:
        fs.releasedir(fh)


def test_lookup_finds_and_counts(fs: Filesystem) -> None:
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    assert fs.lookup(ROOT_INO, b"d", ROOT).ino == d.ino
    assert fs.inode(d.ino).lookups == 2  # mkdir's reference and the lookup's
    assert fs.lookup(d.ino, b"..", ROOT).ino == ROOT_INO
    assert fs.lookup(d.ino, b".", ROOT).ino == d.ino
    with pytest.raises(FsError) as exc:
        fs.lookup(ROOT_INO, b"missing", ROOT)
    assert err(exc) == errno.ENOENT
    with pytest.raises(FsError) as exc:
        fs.lookup(ROOT_INO, b"x" * 256, ROOT)
    assert err(exc) == errno.ENAMETOOLONG
    _, f = create(fs, b"f")
    with pytest.raises(FsError) as exc:
        fs.lookup(f, b"x", ROOT)
    assert err(exc) == errno.ENOTDIR


def test_mkdir_link_counts_and_errors(fs: Filesystem) -> None:
    a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT)
    assert a.nlink == 2
    assert stat.S_ISDIR(a.mode)
    assert fs.getattr(ROOT_INO).nlink == 3
    fs.mkdir(a.ino, b"b", 0o700, ROOT)
    assert fs.getattr(a.ino).nlink == 3
    for name, want in ((b"a", errno.EEXIST), (b".", errno.EEXIST), (b"a/b", errno.EINVAL)):
        with pytest.raises(FsError) as exc:
            fs.mkdir(ROOT_INO, name, 0o755, ROOT)
        assert err(exc) == want


def test_owner_umask_and_setgid_inheritance(fs: Filesystem) -> None:
    d = fs.mkdir(ROOT_INO, b"shared", 0o2775, ROOT)
    fs.inode(d.ino).gid = 50
    f = fs.mknod(d.ino, b"f", stat.S_IFREG | 0o666, 0, USER)
    assert (f.uid, f.gid) == (1000, 50)
    assert stat.S_IMODE(f.mode) == 0o644  # umask 022
    sub = fs.mkdir(d.ino, b"sub", 0o777, USER)
    assert sub.gid == 50
    assert sub.mode & stat.S_ISGID
    plain = fs.mkdir(ROOT_INO, b"plain", 0o777, USER)
    assert plain.gid == 1000


def test_mknod_special_files(fs: Filesystem) -> None:
    fifo = fs.mknod(ROOT_INO, b"fifo", stat.S_IFIFO | 0o600, 0, ROOT)
    assert stat.S_ISFIFO(fifo.mode)
    dev = fs.mknod(ROOT_INO, b"null", stat.S_IFCHR | 0o666, (1 << 8) | 3, ROOT)
    assert stat.S_ISCHR(dev.mode)
    assert dev.rdev == (1 << 8) | 3
    with pytest.raises(FsError) as exc:
        fs.mknod(ROOT_INO, b"d", stat.S_IFDIR | 0o755, 0, ROOT)
    assert err(exc) == errno.EINVAL
    with pytest.raises(FsError) as exc:
        fs.open(fifo.ino, 0, ROOT)
    assert err(exc) == errno.ENXIO


def test_symlink_and_readlink(fs: Filesystem) -> None:
    s = fs.symlink(ROOT_INO, b"s", b"some/where", ROOT)
    assert stat.S_ISLNK(s.mode)
    assert s.size == len(b"some/where")
    assert fs.readlink(s.ino) == b"some/where"
    with pytest.raises(FsError) as exc:
        fs.readlink(ROOT_INO)
    assert err(exc) == errno.EINVAL
    with pytest.raises(FsError) as exc:
        fs.symlink(ROOT_INO, b"e", b"", ROOT)
    assert err(exc) == errno.ENOENT
    with pytest.raises(FsError) as exc:
        fs.symlink(ROOT_INO, b"long", b"x" * 4096, ROOT)
    assert err(exc) == errno.ENAMETOOLONG


async def test_hard_links(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    attr = fs.link(ino, ROOT_INO, b"g", ROOT)
    assert attr.nlink == 2
    assert fs.lookup(ROOT_INO, b"g", ROOT).ino == ino
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    with pytest.raises(FsError) as exc:
        fs.link(d.ino, ROOT_INO, b"dd", ROOT)
    assert err(exc) == errno.EPERM
    with pytest.raises(FsError) as exc:
        fs.link(ino, ROOT_INO, b"g", ROOT)
    assert err(exc) == errno.EEXIST
    await fs.unlink(ROOT_INO, b"f", ROOT)
    await fs.unlink(ROOT_INO, b"g", ROOT)
    assert fs.getattr(ino).nlink == 0
    with pytest.raises(FsError) as exc:  # linkat of an unlinked open file
        fs.link(ino, ROOT_INO, b"back", ROOT)
    assert err(exc) == errno.ENOENT
    await fs.release(fh)


async def test_unlink_and_rmdir_errors(fs: Filesystem) -> None:
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    create(fs, b"f", parent=d.ino)
    cases = [
        (fs.unlink(ROOT_INO, b"d", ROOT), errno.EISDIR),
        (fs.unlink(ROOT_INO, b"nope", ROOT), errno.ENOENT),
        (fs.rmdir(ROOT_INO, b"d", ROOT), errno.ENOTEMPTY),
        (fs.rmdir(d.ino, b"f", ROOT), errno.ENOTDIR),
        (fs.rmdir(d.ino, b".", ROOT), errno.EINVAL),
    ]
    for call, want in cases:
        with pytest.raises(FsError) as exc:
            await call
        assert err(exc) == want
    await fs.unlink(d.ino, b"f", ROOT)
    await fs.rmdir(ROOT_INO, b"d", ROOT)
    assert fs.getattr(ROOT_INO).nlink == 2
    assert names(fs, ROOT_INO) == []
    assert fs.getattr(d.ino).nlink == 0  # still looked up by the kernel
    with pytest.raises(FsError) as exc:  # creating in a removed directory
        fs.mkdir(d.ino, b"y", 0o755, ROOT)
    assert err(exc) == errno.ENOENT
    fs.forget([(d.ino, 1)])
    with pytest.raises(FsError):
        fs.getattr(d.ino)


async def test_unlinked_inode_lives_until_forget(fs: Filesystem) -> None:
    f = fs.mknod(ROOT_INO, b"f", stat.S_IFREG | 0o644, 0, ROOT)
    fs.lookup(ROOT_INO, b"f", ROOT)
    await fs.unlink(ROOT_INO, b"f", ROOT)
    assert fs.getattr(f.ino).nlink == 0
    fs.forget([(f.ino, 1)])
    assert fs.getattr(f.ino).nlink == 0
    fs.forget([(f.ino, 1), (999_999, 3)])  # unknown inodes are ignored
    with pytest.raises(FsError) as exc:
        fs.getattr(f.ino)
    assert err(exc) == errno.ENOENT


# -- rename -----------------------------------------------------------------------------
async def test_rename_moves_and_replaces(fs: Filesystem) -> None:
    _, a = create(fs, b"a")
    _, b = create(fs, b"b")
    fs.forget([(b, 1)])
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    await fs.rename(ROOT_INO, b"a", d.ino, b"a2", 0, ROOT)
    assert names(fs, ROOT_INO) == [b"b", b"d"]
    assert fs.lookup(d.ino, b"a2", ROOT).ino == a
    await fs.rename(d.ino, b"a2", ROOT_INO, b"b", 0, ROOT)
    assert fs.lookup(ROOT_INO, b"b", ROOT).ino == a
    assert fs.getattr(b).nlink == 0  # still open: lives until release


async def test_rename_noreplace(fs: Filesystem) -> None:
    create(fs, b"a")
    create(fs, b"b")
    with pytest.raises(FsError) as exc:
        await fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", RENAME_NOREPLACE, ROOT)
    assert err(exc) == errno.EEXIST
    await fs.rename(ROOT_INO, b"a", ROOT_INO, b"c", RENAME_NOREPLACE, ROOT)
    assert names(fs, ROOT_INO) == [b"b", b"c"]


async def test_rename_exchange_file_and_directory_across_parents(fs: Filesystem) -> None:
    p = fs.mkdir(ROOT_INO, b"p", 0o755, ROOT)
    _, f = create(fs, b"f")
    sub = fs.mkdir(p.ino, b"sub", 0o755, ROOT)
    await fs.rename(ROOT_INO, b"f", p.ino, b"sub", RENAME_EXCHANGE, ROOT)
    assert fs.lookup(ROOT_INO, b"f", ROOT).ino == sub.ino
    assert fs.lookup(p.ino, b"sub", ROOT).ino == f
    assert fs.lookup(sub.ino, b"..", ROOT).ino == ROOT_INO
    assert fs.getattr(p.ino).nlink == 2
    assert fs.getattr(ROOT_INO).nlink == 4
    with pytest.raises(FsError) as exc:
        await fs.rename(ROOT_INO, b"f", ROOT_INO, b"none", RENAME_EXCHANGE, ROOT)
    assert err(exc) == errno.ENOENT


async def test_rename_flag_and_shape_errors(fs: Filesystem) -> None:
    a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT)
    inner = fs.mkdir(a.ino, b"inner", 0o755, ROOT)
    fs.mkdir(inner.ino, b"deeper", 0o755, ROOT)
    create(fs, b"f")
    fs.mkdir(ROOT_INO, b"empty", 0o755, ROOT)
    cases = [
        ((ROOT_INO, b"f", ROOT_INO, b"g", RENAME_NOREPLACE | RENAME_EXCHANGE), errno.EINVAL),
        ((ROOT_INO, b"f", ROOT_INO, b"g", 4), errno.EINVAL),
        ((ROOT_INO, b"a", inner.ino, b"x", 0), errno.EINVAL),
        ((ROOT_INO, b"a", a.ino, b"x", 0), errno.EINVAL),
        ((ROOT_INO, b"a", a.ino, b"inner", RENAME_EXCHANGE), errno.EINVAL),
        ((ROOT_INO, b"a", ROOT_INO, b"f", 0), errno.ENOTDIR),
        ((ROOT_INO, b"f", ROOT_INO, b"a", 0), errno.EISDIR),
        ((ROOT_INO, b"empty", a.ino, b"inner", 0), errno.ENOTEMPTY),
        ((ROOT_INO, b"missing", ROOT_INO, b"x", 0), errno.ENOENT),
    ]
    for args, want in cases:
        with pytest.raises(FsError) as exc:
            await fs.rename(*args, ROOT)
        assert err(exc) == want, args
    await fs.rename(a.ino, b"inner", ROOT_INO, b"empty", 0, ROOT)  # onto an empty dir
    assert fs.lookup(ROOT_INO, b"empty", ROOT).ino == inner.ino
    assert fs.getattr(a.ino).nlink == 2
    assert fs.getattr(ROOT_INO).nlink == 4  # a, empty(=inner) ; old "empty" is gone


async def test_rename_onto_own_hard_link_does_nothing(fs: Filesystem) -> None:
    _, f = create(fs, b"f")
    fs.link(f, ROOT_INO, b"g", ROOT)
    await fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0, ROOT)
    assert names(fs, ROOT_INO) == [b"f", b"g"]
    assert fs.getattr(f).nlink == 2


async def test_rename_updates_times(fs: Filesystem) -> None:
    clock = iter(range(1000, 2000))
    fs.clock = lambda: next(clock)
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    _, f = create(fs, b"f")
    before = fs.getattr(f)
    await fs.rename(ROOT_INO, b"f", d.ino, b"f", 0, ROOT)
    after, root, dd = fs.getattr(f), fs.getattr(ROOT_INO), fs.getattr(d.ino)
    assert after.ctime_ns > before.ctime_ns
    assert after.mtime_ns == before.mtime_ns
    assert root.mtime_ns == root.ctime_ns == dd.mtime_ns == after.ctime_ns


# -- readdir ----------------------------------------------------------------------------
async def test_readdir_cookies_survive_changes(fs: Filesystem) -> None:
    for i in range(100):
        fs.mknod(ROOT_INO, b"f%03d" % i, stat.S_IFREG | 0o644, 0, ROOT)
    fh = fs.opendir(ROOT_INO, ROOT)
    seen: list[bytes] = []
    it = fs.readdir(fh, 0)
    for _ in range(40):
        name, attr, cookie = next(it)
        assert attr.ino == fs.lookup(ROOT_INO, name, ROOT).ino
        seen.append(name)
    # Remove entries already read and not yet read, add new ones, then resume.
    doomed = list(range(0, 40, 2)) + list(range(60, 100, 3))
    for i in doomed:
        fs.mknod(ROOT_INO, b"new%03d" % i, stat.S_IFREG | 0o644, 0, ROOT)
        await fs.unlink(ROOT_INO, b"f%03d" % i, ROOT)
    removed = {b"f%03d" % i for i in doomed}
    rest = [name for name, _, _ in fs.readdir(fh, cookie)]
    fs.releasedir(fh)
    originals = [n for n in rest if n.startswith(b"f")]
    want = [b"f%03d" % i for i in range(40, 100) if b"f%03d" % i not in removed]
    assert originals == want  # no repeat, no skip of an entry that stayed
    assert not set(rest) & set(seen)
    assert [n for n in rest if n.startswith(b"new")] == sorted(
        n for n in rest if n.startswith(b"new")
    )
    assert len([n for n in rest if n.startswith(b"new")]) == len(removed)


def test_readdir_of_empty_and_bad_handle(fs: Filesystem) -> None:
    assert names(fs, ROOT_INO) == []
    with pytest.raises(FsError) as exc:
        fs.readdir(12345, 0)
    assert err(exc) == errno.EBADF
    _, f = create(fs, b"f")
    with pytest.raises(FsError) as exc:
        fs.opendir(f, ROOT)
    assert err(exc) == errno.ENOTDIR


def test_inode_limit_and_statfs_files() -> None:
    fs = Filesystem(capacity_blocks=8, max_inodes=4, uid=0, gid=0)
    st = fs.statfs()
    assert (st.files, st.ffree, st.namemax, st.bsize) == (4, 3, 255, 4096)
    fs.mkdir(ROOT_INO, b"a", 0o755, ROOT)
    fs.mkdir(ROOT_INO, b"b", 0o755, ROOT)
    fs.symlink(ROOT_INO, b"c", b"a", ROOT)
    assert fs.statfs().ffree == 0
    with pytest.raises(FsError) as exc:
        fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    assert err(exc) == errno.ENOSPC
    fs.check()


def test_ctx_is_frozen() -> None:
    with pytest.raises(AttributeError):
        ROOT.uid = 5  # type: ignore[misc]
    assert Ctx(1, 2, 3).umask == 0


async def test_readdirplus_references_and_forget(fs: Filesystem) -> None:
    _, f = create(fs, b"f")
    fs.forget([(f, 1)])  # the create's reference
    fh = fs.opendir(ROOT_INO, ROOT)
    for _, attr, _ in fs.readdir(fh, 0):
        fs.inc_lookup(attr.ino)  # what the adapter does for each entry the kernel took
    fs.releasedir(fh)
    await fs.unlink(ROOT_INO, b"f", ROOT)
    await fs.release(1)
    assert fs.getattr(f).nlink == 0  # the readdirplus reference keeps it
    fs.forget([(f, 1)])
    with pytest.raises(FsError):
        fs.getattr(f)


async def test_create_existing(fs: Filesystem) -> None:
    import os

    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"abc")
    with pytest.raises(FsError) as exc:
        fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR | os.O_CREAT | os.O_EXCL, ROOT)
    assert err(exc) == errno.EEXIST
    fh2, attr = fs.create(ROOT_INO, b"f", 0o600, os.O_RDWR | os.O_CREAT, ROOT)
    assert attr.ino == ino
    assert fs.read(fh2, 0, 10) == b"abc"
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    with pytest.raises(FsError) as exc:
        fs.create(ROOT_INO, b"d", 0o644, os.O_RDWR | os.O_CREAT, ROOT)
    assert err(exc) == errno.EISDIR
    plain = fs.mknod(d.ino, b"plain", 0o644, 0, ROOT)  # type 0: a regular file
    assert stat.S_ISREG(plain.mode)
