"""``user.mkwritefs.*`` extended attributes: the figures, where users look, and the
root's settings.

This module owns the introspection namespace.  The values are computed when read,
as decimal ASCII, and are never stored or listed (so ``cp -a`` and ``tar --xattrs`` copy
nothing of them).  On the root: the filesystem's block counters, the write-notification
totals (``mkwrite_calls``, ``sigbus``, ``writeback_errors``, ``lost_bytes``) and
settings (``policy``, ``writeback_interval``, ``dirty_expire``); on a regular file: its
own allocated and reserved blocks, dirty pages and the same four counters. ``fsck`` on
the root runs the invariant checks when read: ``clean`` or ``corrupt: ...``.  Setting or
removing a name answers EPERM unless a setter is registered for it; reading an unknown
one answers ENODATA.

Root settings, for the mount's owner only (EPERM for others; EINVAL for a bad value,
which changes nothing): ``policy`` (a :class:`~fusefs.vm.policy.Policy` name),
``capacity_blocks`` (not below allocated + reserved), ``writeback_interval`` and
``dirty_expire`` (seconds, decimal); fault injection, a slow or failing disk:
``writeback_latency`` (seconds one batch of writeback I/O takes) and
``inject_writeback_error`` (``EIO``, ``EIO:N``: the next N page writes of every file fail
with that errno; ``none`` stops it).

Later features add names with :func:`register_root` / :func:`register_file`, and
settings of the root with :func:`register_root_setter` (a setter checks its caller with
:func:`require_owner` and answers EINVAL for a bad value, changing nothing).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from fusefs.constants import XATTR_PREFIX_BYTES
from fusefs.fs.errors import FsError
from fusefs.fs.inode import Ctx, Inode

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem

PREFIX = XATTR_PREFIX_BYTES

RootFigure = Callable[["Filesystem"], int | str]
FileFigure = Callable[["Filesystem", Inode], int | str]
RootSetter = Callable[["Filesystem", bytes, Ctx], None]

COUNTERS = ("mkwrite_calls", "sigbus", "writeback_errors", "lost_bytes")


def _seconds(value: float) -> str:
    return repr(int(value)) if value == int(value) else repr(value)


def _fsck(fs: Filesystem) -> str:
    """Check the filesystem's invariants now (fsck.check_filesystem): "clean", or what is
    wrong. A read of the root's ``user.mkwritefs.fsck``, for tests and soaks on a mount."""
    try:
        fs.check()
    except AssertionError as exc:
        return f"corrupt: {exc}"
    return "clean"


_ROOT: dict[bytes, RootFigure] = {
    b"fsck": _fsck,
    b"capacity_blocks": lambda fs: fs.space.capacity,
    b"free_blocks": lambda fs: fs.space.free,
    b"reserved_blocks": lambda fs: fs.space.reserved,
    b"allocated_blocks": lambda fs: fs.space.allocated,
    b"policy": lambda fs: str(fs.policy),
    b"writeback_interval": lambda fs: _seconds(fs.writeback_interval),
    b"dirty_expire": lambda fs: _seconds(fs.dirty_expire),
    b"writeback_latency": lambda fs: _seconds(fs.writeback_latency),
    b"inject_writeback_error": lambda fs: _fault_name(fs.writeback_fault),
}
# The largest capacity: 2^63 bytes (statfs reports blocks as a u64; MAX_LFS_FILESIZE).
MAX_CAPACITY_BLOCKS = 2**51


def _root_counter(field: str) -> RootFigure:
    return lambda fs: int(getattr(fs.vm_totals, field))


def _file_counter(field: str) -> FileFigure:
    def figure(fs: Filesystem, inode: Inode) -> int:
        if inode.data is None:
            raise FsError(errno.ENODATA)
        return int(getattr(inode.data.counters, field))

    return figure


for _field in COUNTERS:
    _ROOT[_field.encode()] = _root_counter(_field)


def _file_data(inode: Inode) -> tuple[int, int, int]:
    data = inode.data
    if data is None:
        raise FsError(errno.ENODATA)
    return data.nr_allocated, data.nr_reserved, data.nr_dirty


_FILE: dict[bytes, FileFigure] = {
    b"allocated_blocks": lambda fs, inode: _file_data(inode)[0],
    b"reserved_blocks": lambda fs, inode: _file_data(inode)[1],
    b"dirty_pages": lambda fs, inode: _file_data(inode)[2],
}
for _field in COUNTERS:
    _FILE[_field.encode()] = _file_counter(_field)


def register_root(name: bytes, figure: RootFigure) -> None:
    _ROOT[name] = figure


def register_file(name: bytes, figure: FileFigure) -> None:
    _FILE[name] = figure


_ROOT_SETTERS: dict[bytes, RootSetter] = {}


def register_root_setter(name: bytes, setter: RootSetter) -> None:
    _ROOT_SETTERS[name] = setter


def require_owner(fs: Filesystem, ctx: Ctx) -> None:
    """Settings are for the mount's owner (the root directory's owner) and root."""
    if ctx.uid not in (0, fs.inode(fs.root_ino).uid):
        raise FsError(errno.EPERM, "only the mount's owner may change settings")


def _decode(value: bytes) -> str:
    try:
        return value.decode("ascii").strip()
    except UnicodeDecodeError:
        raise FsError(errno.EINVAL, "value is not ASCII") from None


def _parse_int(value: bytes) -> int:
    text = _decode(value)
    if not text.isdigit():
        raise FsError(errno.EINVAL, f"{text!r} is not a decimal block count")
    return int(text)


def _parse_seconds(value: bytes) -> float:
    text = _decode(value)
    try:
        seconds = float(text)
    except ValueError:
        raise FsError(errno.EINVAL, f"{text!r} is not a number of seconds") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise FsError(errno.EINVAL, f"{text!r} is not a number of seconds")
    return seconds


def _fault_name(fault: tuple[int, int]) -> str:
    err, pages = fault
    return f"{errno.errorcode.get(err, err)}:{pages}" if pages else "none"


def _parse_fault(value: bytes) -> tuple[int, int]:
    """``EIO``, ``EIO:N`` (an errno name and a page count, default 1) or ``none``."""
    text = _decode(value)
    if text.lower() == "none":
        return 0, 0
    name, sep, count = text.partition(":")
    err = getattr(errno, name, None) if name.startswith("E") and name.isupper() else None
    if not isinstance(err, int) or (sep and not count.isdigit()):
        raise FsError(errno.EINVAL, f"{text!r} is not ERRNO, ERRNO:PAGES or none")
    return err, int(count) if sep else 1


def _set_policy(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    fs.set_policy(value)


def _set_capacity(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    blocks = _parse_int(value)
    if blocks > MAX_CAPACITY_BLOCKS:
        raise FsError(errno.EINVAL, f"capacity {blocks} above {MAX_CAPACITY_BLOCKS} blocks")
    fs.set_capacity(blocks)


def _set_interval(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    fs.set_flusher(interval=_parse_seconds(value))


def _set_expire(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    fs.set_flusher(expire=_parse_seconds(value))


def _set_latency(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    fs.set_writeback_latency(_parse_seconds(value))


def _set_fault(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    require_owner(fs, ctx)
    fs.inject_writeback_error(*_parse_fault(value))


# The filesystem's own settings; a setter registered under the same name takes
# precedence (and unregistering it brings the built-in one back).
_BUILTIN_SETTERS: dict[bytes, RootSetter] = {
    b"policy": _set_policy,
    b"capacity_blocks": _set_capacity,
    b"writeback_interval": _set_interval,
    b"dirty_expire": _set_expire,
    b"writeback_latency": _set_latency,
    b"inject_writeback_error": _set_fault,
}


def is_introspection(name: bytes) -> bool:
    return name.startswith(PREFIX)


def get(fs: Filesystem, inode: Inode, name: bytes, *, is_root: bool) -> bytes:
    key = name[len(PREFIX) :]
    if is_root and key in _ROOT:
        return str(_ROOT[key](fs)).encode()
    if inode.is_reg and key in _FILE:
        return str(_FILE[key](fs, inode)).encode()
    raise FsError(errno.ENODATA, f"no introspection attribute {name!r} here")


def set_(fs: Filesystem, name: bytes, value: bytes, ctx: Ctx, *, is_root: bool) -> None:
    key = name[len(PREFIX) :]
    setter = (_ROOT_SETTERS.get(key) or _BUILTIN_SETTERS.get(key)) if is_root else None
    if setter is None:
        raise FsError(errno.EPERM, f"{name!r} is read-only")
    setter(fs, value, ctx)


def refuse_change(name: bytes) -> None:
    raise FsError(errno.EPERM, f"{name!r} cannot be removed")
