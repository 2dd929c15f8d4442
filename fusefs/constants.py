"""The names and sizes every layer of mkwritefs agrees on, defined once.

A page is the simulator's (``sim_mmu.page``), 4096 bytes as on x86-64; a block of the
filesystem is one page, so that one block backs one page of the page cache (as tmpfs
and ext4 with 4 KiB blocks). The mount's figures and settings are extended attributes
under ``user.mkwritefs.``; the kernel lists the mount as type ``fuse.mkwritefs``.
"""

from __future__ import annotations

from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "BLOCK_SIZE",
    "FS_NAME",
    "FS_TYPE",
    "PAGE_MASK",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "XATTR_PREFIX",
    "XATTR_PREFIX_BYTES",
]

BLOCK_SIZE = PAGE_SIZE
FS_NAME = "mkwritefs"
FS_TYPE = f"fuse.{FS_NAME}"
XATTR_PREFIX = f"user.{FS_NAME}."
XATTR_PREFIX_BYTES = XATTR_PREFIX.encode()
