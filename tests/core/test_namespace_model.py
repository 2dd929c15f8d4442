"""Property test of the namespace: random mkdir/create/link/unlink/rmdir/rename (with
RENAME_NOREPLACE and RENAME_EXCHANGE) on a small tree, against a model that maps each
path to a file identity.  After every step the errno (or success) is the predicted one,
the tree read back with readdir and lookup equals the model, and fsck (link counts,
parent links, no dangling entries) passes."""

from __future__ import annotations

import errno

import pytest
import trio
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fusefs.fs.core import RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_INO, Filesystem, FsError

from .conftest import ROOT

Path = tuple[bytes, ...]
DIR = -1  # model identity of every directory: directories are told apart by path


class Tree:
    """The model: path -> file id (DIR for a directory).  Hard links share an id."""

    def __init__(self) -> None:
        self.nodes: dict[Path, int] = {(): DIR}
        self.next_id = 0

    def is_dir(self, p: Path) -> bool:
        return self.nodes.get(p) == DIR

    def children(self, p: Path) -> list[Path]:
        return [q for q in self.nodes if len(q) == len(p) + 1 and q[: len(p)] == p]

    def parent_error(self, p: Path) -> int:
        """The errno for a path whose parent does not resolve to a directory, or 0."""
        for i in range(len(p) - 1):
            q = p[: i + 1]
            if q not in self.nodes:
                return errno.ENOENT
            if not self.is_dir(q):
                return errno.ENOTDIR
        return 0

    def move(self, src: Path, dst: Path) -> None:
        for q in [q for q in self.nodes if q[: len(src)] == src]:
            self.nodes[dst + q[len(src) :]] = self.nodes.pop(q)

    def rename_errno(self, src: Path, dst: Path, flags: int) -> int | None:
        """Predicted errno, 0 for success, None for success that changes nothing."""
        if flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            return errno.EINVAL
        err = self.parent_error(src) or (0 if src in self.nodes else errno.ENOENT)
        err = err or self.parent_error(dst)
        if err:
            return err
        exists = dst in self.nodes
        same = exists and (src == dst or self.nodes[src] == self.nodes[dst] != DIR)
        inside = dst[: len(src)] == src and self.is_dir(src)
        if flags & RENAME_EXCHANGE:
            if not exists:
                return errno.ENOENT
            if same:
                return None
            back = src[: len(dst)] == dst and self.is_dir(dst)
            return errno.EINVAL if inside or back else 0
        if exists and flags & RENAME_NOREPLACE:
            return errno.EEXIST
        if same:
            return None
        if inside:
            return errno.EINVAL
        if exists:
            if self.is_dir(src) and not self.is_dir(dst):
                return errno.ENOTDIR
            if not self.is_dir(src) and self.is_dir(dst):
                return errno.EISDIR
            if self.is_dir(dst) and self.children(dst):
                return errno.ENOTEMPTY
        return 0


class Namespace:
    def __init__(self) -> None:
        self.fs = Filesystem(capacity_blocks=4, uid=0, gid=0)
        self.tree = Tree()

    def resolve(self, p: Path) -> int:
        ino = ROOT_INO
        for name in p:
            ino = self.fs.lookup(ino, name, ROOT).ino
        return ino

    async def call(self, want: int | None, fn: object, *args: object) -> bool:
        """Run ``fn(*args)``; check it fails with ``want``, or succeeds when want is 0/None."""

        async def invoke() -> None:
            result = fn(*args)  # type: ignore[operator]
            if hasattr(result, "__await__"):
                await result

        if want:
            with pytest.raises(FsError) as exc:
                await invoke()
            assert exc.value.errno == want, (fn, args)
            return False
        await invoke()
        return True

    def parent(self, p: Path) -> int | None:
        return None if self.tree.parent_error(p) else self.resolve(p[:-1])

    async def mkdir(self, p: Path) -> None:
        want = self.tree.parent_error(p) or (errno.EEXIST if p in self.tree.nodes else 0)
        ino = self.parent(p)
        if ino is None:
            return
        if await self.call(want, self.fs.mkdir, ino, p[-1], 0o755, ROOT):
            self.tree.nodes[p] = DIR

    async def create(self, p: Path) -> None:
        want = self.tree.parent_error(p) or (errno.EEXIST if p in self.tree.nodes else 0)
        ino = self.parent(p)
        if ino is None:
            return
        if await self.call(want, self.fs.mknod, ino, p[-1], 0o100644, 0, ROOT):
            self.tree.nodes[p] = self.tree.next_id
            self.tree.next_id += 1

    async def link(self, src: Path, dst: Path) -> None:
        if src not in self.tree.nodes or self.tree.parent_error(dst):
            return
        want = errno.EPERM if self.tree.is_dir(src) else 0
        want = want or (errno.EEXIST if dst in self.tree.nodes else 0)
        if await self.call(
            want, self.fs.link, self.resolve(src), self.resolve(dst[:-1]), dst[-1], ROOT
        ):
            self.tree.nodes[dst] = self.tree.nodes[src]

    async def unlink(self, p: Path) -> None:
        if p not in self.tree.nodes or not p:
            return
        want = errno.EISDIR if self.tree.is_dir(p) else 0
        if await self.call(want, self.fs.unlink, self.resolve(p[:-1]), p[-1], ROOT):
            del self.tree.nodes[p]

    async def rmdir(self, p: Path) -> None:
        if p not in self.tree.nodes or not p:
            return
        want = errno.ENOTDIR if not self.tree.is_dir(p) else 0
        want = want or (errno.ENOTEMPTY if self.tree.children(p) else 0)
        if await self.call(want, self.fs.rmdir, self.resolve(p[:-1]), p[-1], ROOT):
            del self.tree.nodes[p]

    async def rename(self, src: Path, dst: Path, flags: int) -> None:
        if not src or not dst:
            return
        want = self.tree.rename_errno(src, dst, flags)
        sp, dp = self.parent(src), self.parent(dst)
        if sp is None or dp is None:
            return
        if not await self.call(want, self.fs.rename, sp, src[-1], dp, dst[-1], flags, ROOT):
            return
        if want is None:
            return
        tree = self.tree
        moves_dir = tree.is_dir(src) or bool(flags & RENAME_EXCHANGE and tree.is_dir(dst))
        across = " to another directory" if src[:-1] != dst[:-1] else ""
        event(("a directory moved" if moves_dir else "a file moved") + across)
        if flags & RENAME_EXCHANGE:
            tmp = (b"\0tmp",)
            tree.move(src, tmp)
            tree.move(dst, src)
            tree.move(tmp, dst)
        else:
            for q in [q for q in tree.nodes if q[: len(dst)] == dst]:
                del tree.nodes[q]
            tree.move(src, dst)

    def verify(self) -> None:
        self.fs.check()
        ids: dict[int, int] = {}
        for p, ident in self.tree.nodes.items():
            ino = self.resolve(p)
            if ident == DIR:
                fh = self.fs.opendir(ino, ROOT)
                listed = sorted(name for name, _, _ in self.fs.readdir(fh, 0))
                self.fs.releasedir(fh)
                assert listed == sorted(q[-1] for q in self.tree.children(p)), p
                assert self.fs.lookup(ino, b"..", ROOT).ino == self.resolve(p[:-1])
            else:
                assert ids.setdefault(ident, ino) == ino, "hard links differ"
                links = sum(1 for v in self.tree.nodes.values() if v == ident)
                assert self.fs.getattr(ino).nlink == links


names = st.sampled_from([b"a", b"b", b"c"])
paths = st.one_of(
    st.tuples(names),
    st.tuples(names, names),
    st.tuples(names, names),
    st.tuples(names, names, names),
)
steps = st.one_of(
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("create"), paths),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("rmdir"), paths),
    st.tuples(st.just("rename"), paths, paths, st.sampled_from([0, 0, 1, 2, 3])),
    st.tuples(st.just("rename"), paths, paths, st.just(0)),
    st.tuples(st.just("rename"), paths, paths, st.just(0)),
    st.tuples(st.just("rename"), paths, paths, st.just(RENAME_EXCHANGE)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=30))
def test_random_namespace_operations_match_the_model(ops: list[tuple[object, ...]]) -> None:
    async def run() -> None:
        ns = Namespace()
        # Start from a populated tree, so most random steps meet existing names.
        for d in [(b"a",), (b"b",), (b"a", b"a"), (b"b", b"a"), (b"a", b"a", b"b"), (b"b", b"c")]:
            await ns.mkdir(d)
        for f in [(b"c",), (b"a", b"b"), (b"b", b"b"), (b"b", b"a", b"c")]:
            await ns.create(f)
        await ns.link((b"c",), (b"a", b"c"))
        ns.verify()
        for name, *args in ops:
            await getattr(ns, str(name))(*args)
            ns.verify()

    trio.run(run)
