"""A directory's entries, with readdir cookies that stay valid while it changes.

This module owns one directory's name -> inode map.  Each entry gets a cookie when it
is added, from a counter that only grows, and keeps it until it is removed (a rename
that replaces a name keeps that name's cookie).  ``readdir`` continues after a cookie,
so a reader that resumes with the cookie of the last entry it saw neither repeats an
entry nor skips one that stayed: the guarantee POSIX asks of ``telldir``/``seekdir``
and that the kernel's FUSE readdir offsets rely on (ext4 gets it from hash order,
tmpfs from a cursor; here it is insertion order).

Invariant: ``_cookies`` is strictly increasing; ``_names[i]`` is the live name with
cookie ``_cookies[i]`` or None for a removed one; ``entries[name] == (ino, cookie)``
for every live name.  Removed slots are compacted away when they are the majority.
"""

from __future__ import annotations

import errno
from bisect import bisect_right
from collections.abc import Callable, Iterator

from fusefs.fs.errors import FsError

NAME_MAX = 255


def check_name(name: bytes) -> None:
    """A single path component: ENAMETOOLONG over 255 bytes, EINVAL if malformed."""
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)
    if not name or b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"bad file name {name!r}")


def check_new_name(name: bytes) -> None:
    """A name to create: also not "." or ".." (EEXIST, as mkdir(".") answers)."""
    check_name(name)
    if name in (b".", b".."):
        raise FsError(errno.EEXIST)


class Directory:
    """The entries of one directory (no "." or "..": those are derived)."""

    __slots__ = ("_cookies", "_dead", "_names", "_next_cookie", "entries", "on_change", "parent")

    def __init__(self, parent: int) -> None:
        self.parent = parent
        # Set by a persistent store: called with each name added, replaced or removed.
        self.on_change: Callable[[bytes], None] | None = None
        self.entries: dict[bytes, tuple[int, int]] = {}
        self._cookies: list[int] = []
        self._names: list[bytes | None] = []
        self._next_cookie = 1
        self._dead = 0

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, name: bytes) -> int | None:
        entry = self.entries.get(name)
        return None if entry is None else entry[0]

    def add(self, name: bytes, ino: int) -> None:
        if name in self.entries:
            raise KeyError(name)
        cookie = self._next_cookie
        self._next_cookie += 1
        self.entries[name] = (ino, cookie)
        self._cookies.append(cookie)
        self._names.append(name)
        if self.on_change is not None:
            self.on_change(name)

    def load(self, name: bytes, ino: int, cookie: int) -> None:
        """Add an entry read from a store, with its cookie (given in increasing order)."""
        if name in self.entries or (self._cookies and cookie <= self._cookies[-1]):
            raise ValueError(f"entry {name!r} with cookie {cookie} out of order")
        self.entries[name] = (ino, cookie)
        self._cookies.append(cookie)
        self._names.append(name)
        self._next_cookie = cookie + 1

    def replace(self, name: bytes, ino: int) -> int:
        """Point an existing name at another inode, keeping its cookie; return the old."""
        old, cookie = self.entries[name]
        self.entries[name] = (ino, cookie)
        if self.on_change is not None:
            self.on_change(name)
        return old

    def remove(self, name: bytes) -> int:
        ino, cookie = self.entries.pop(name)
        i = bisect_right(self._cookies, cookie) - 1
        self._names[i] = None
        self._dead += 1
        if self.on_change is not None:
            self.on_change(name)
        if self._dead > 32 and self._dead * 2 > len(self._names):
            self._compact()
        return ino

    def _compact(self) -> None:
        pairs = [(c, n) for c, n in zip(self._cookies, self._names, strict=True) if n]
        self._cookies = [c for c, _ in pairs]
        self._names = [n for _, n in pairs]
        self._dead = 0

    def entries_after(self, cookie: int) -> Iterator[tuple[bytes, int, int]]:
        """Live entries with a cookie greater than ``cookie``: (name, ino, cookie).

        Safe against changes between two steps: each step searches afresh.
        """
        while True:
            i = bisect_right(self._cookies, cookie)
            while i < len(self._names) and self._names[i] is None:
                i += 1
            if i >= len(self._names):
                return
            name = self._names[i]
            assert name is not None
            cookie = self._cookies[i]
            yield name, self.entries[name][0], cookie
