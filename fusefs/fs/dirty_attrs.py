"""The dirty model's names under the root's ``user.mkwritefs.*``: its figures
(``dirty_pages``, ``dirty_limit_pages``, the ratios and bytes of the machine, the device's
``min_ratio``/``max_ratio``/``strictlimit``) and their setters, for the mount's owner.

The model itself is :mod:`fusefs.vm.throttle`'s; this module only reads and sets it
through the filesystem, as every other control attribute (:mod:`fusefs.fs.introspect`).
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from fusefs.fs import introspect
from fusefs.fs.errors import FsError
from fusefs.fs.inode import Ctx
from fusefs.vm.throttle import (
    FIGURES,
    PLACEMENTS,
    choice,
    set_max_ratio,
    set_min_ratio,
    set_strictlimit,
    set_vm_bytes,
    set_vm_ratio,
)
from sim_mmu.bdi import DirtyDomain

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem


# -- the root's user.mkwritefs.* names ----------------------------------------------------
def _dirty_pages(fs: Filesystem) -> int:
    if fs.dirty is None:
        raise FsError(errno.ENODATA, "no dirty accounting: dirty_throttle is none")
    return fs.dirty.dirty_pages()


def _dirty_limit_pages(fs: Filesystem) -> int:
    if fs.dirty is None:
        raise FsError(errno.ENODATA, "no dirty limit: dirty_throttle is none")
    return fs.dirty.limit_pages()


def _figure(name: str) -> Callable[[Filesystem], int | str]:
    def figure(fs: Filesystem) -> int | str:
        config = fs.dirty_config
        if fs.dirty is None and config.device is None:  # the device the policy would get
            device = "fuse" if str(fs.policy) == "fuse" else "disk"
            config = dataclasses.replace(config, device=device)
        return FIGURES[name](config, fs.dirty)

    return figure


def _set_ratio(name: str) -> Callable[[Filesystem, bytes, Ctx], None]:
    def setter(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
        introspect.require_owner(fs, ctx)
        set_vm_ratio(fs.dirty_config, name, value)

    return setter


def _set_bytes(name: str) -> Callable[[Filesystem, bytes, Ctx], None]:
    def setter(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
        introspect.require_owner(fs, ctx)
        set_vm_bytes(fs.dirty_config, name, value)

    return setter


def _set_min_ratio(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    introspect.require_owner(fs, ctx)
    set_min_ratio(fs.dirty_config, fs.dirty, value)


def _set_max_ratio(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    introspect.require_owner(fs, ctx)
    set_max_ratio(fs.dirty_config, fs.dirty, value)


def _set_strictlimit(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    introspect.require_owner(fs, ctx)
    set_strictlimit(fs.dirty_config, fs.dirty, value)


def _set_throttle(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    introspect.require_owner(fs, ctx)
    fs.set_dirty_throttle(choice(value, ("none", *DirtyDomain.THROTTLES), "dirty_throttle"))


def _set_placement(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
    introspect.require_owner(fs, ctx)
    fs.dirty_config.placement = choice(value, PLACEMENTS, "dirty_placement")


def _throttle_name(fs: Filesystem) -> str:
    return "none" if fs.dirty is None else fs.dirty.domain.throttle


def register() -> None:
    """Add the dirty model's names to the root's ``user.mkwritefs.*``."""
    introspect.register_root(b"dirty_pages", _dirty_pages)
    introspect.register_root(b"dirty_limit_pages", _dirty_limit_pages)
    introspect.register_root(b"dirty_throttle", _throttle_name)
    introspect.register_root(b"dirty_placement", lambda fs: fs.dirty_config.placement)
    introspect.register_root_setter(b"dirty_throttle", _set_throttle)
    introspect.register_root_setter(b"dirty_placement", _set_placement)
    for name in FIGURES:
        introspect.register_root(name.encode(), _figure(name))
    for name in ("dirty_ratio", "dirty_background_ratio"):
        introspect.register_root_setter(name.encode(), _set_ratio(name))
    for name in ("dirty_bytes", "dirty_background_bytes"):
        introspect.register_root_setter(name.encode(), _set_bytes(name))
    introspect.register_root_setter(b"min_ratio", _set_min_ratio)
    introspect.register_root_setter(b"max_ratio", _set_max_ratio)
    introspect.register_root_setter(b"strictlimit", _set_strictlimit)
