"""Write-notification policies: what a fusefs file's ``page_mkwrite`` does.

This module owns the names of the policies and what each says about a mapping: whether
the file has a ``page_mkwrite`` hook at all and whether its backing device accounts
dirty pages (so modern kernels write-protect shared writable mappings even without a
hook).  The behaviour itself is in :mod:`fusefs.vm.ops`.  Each policy models one kernel:

=============  =====================================================================
``legacy``     before 9637a5ef (2.6.18): no hook; space is looked for at writeback
               (``block_write_full_page`` allocating), none ⇒ data lost, ENOSPC on the
               mapping (``mapping_set_error``)
``reserve``    ext4 delalloc: ``ext4_page_mkwrite`` → ``block_page_mkwrite`` with
               ``ext4_da_get_block_prep``; ENOSPC ⇒ ``ext4_should_retry_alloc`` ⇒ SIGBUS
``reserve-cow`` btrfs: ``btrfs_page_mkwrite`` reserves for every store to a clean page,
               overwrites included (``btrfs_delalloc_reserve_space``)
``fuse``       ``fuse_page_mkwrite``: wait for the page's writeback, reserve nothing;
               ENOSPC only at writeback
``cache``      netfs/NFS/AFS with FS-Cache: ``nfs_vm_page_mkwrite`` waits until the
               page's contents are in the local cache (``fscache_wait_on_page_write``)
``shmem``      tmpfs: no hook, no write-notify; ``shmem_fault`` allocates at fault time,
               a read of a hole included (``SGP_CACHE``); over the limit ⇒ SIGBUS
=============  =====================================================================

The policy in force when a file is mapped governs that mapping (the VMA keeps the
``vm_ops`` it got at ``mmap``, as the kernel's does); changing the policy at run time
affects later mappings.
"""

from __future__ import annotations

import enum
import errno

from fusefs.fs.errors import FsError


class Policy(enum.Enum):
    LEGACY = "legacy"
    RESERVE = "reserve"
    RESERVE_COW = "reserve-cow"
    FUSE = "fuse"
    CACHE = "cache"
    SHMEM = "shmem"

    @property
    def has_page_mkwrite(self) -> bool:
        """The file's vm_ops carry a ``page_mkwrite`` hook."""
        return self not in (Policy.LEGACY, Policy.SHMEM)

    @property
    def accounts_dirty(self) -> bool:
        """The backing device does dirty accounting (tmpfs does not)."""
        return self is not Policy.SHMEM

    @property
    def reserves(self) -> bool:
        """``page_mkwrite`` reserves space, so writeback never fails for space."""
        return self in (Policy.RESERVE, Policy.RESERVE_COW)

    def __str__(self) -> str:
        return self.value


DEFAULT_POLICY = Policy.RESERVE


def parse_policy(value: str | bytes | Policy) -> Policy:
    """The policy named ``value`` (``reserve``, ``reserve-cow``...); EINVAL otherwise."""
    if isinstance(value, Policy):
        return value
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise FsError(errno.EINVAL, "policy name is not ASCII") from None
    name = value.strip().lower().replace("_", "-")
    try:
        return Policy(name)
    except ValueError:
        names = ", ".join(p.value for p in Policy)
        raise FsError(errno.EINVAL, f"unknown policy {value!r} (known: {names})") from None
