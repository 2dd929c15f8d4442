"""What a filesystem implements so that ``sim_mmu`` can map its files.

These are the kernel's ``struct vm_operations_struct``, ``struct
address_space_operations`` and the parts of ``struct file`` that ``mmap`` uses.  They are
deliberately small and stable: the filesystem (``fusefs``) implements them, the
simulator calls them, and nothing else crosses the boundary.

Shape (all methods that can block are ``async``):

* ``VmOperations.fault(vmf) -> VmFault`` finds or reads the page at ``vmf.pgoff`` and
  stores it in ``vmf.page`` (kernel: ``->fault``, usually ``filemap_fault``; this package
  provides ``sim_mmu.filemap.filemap_fault`` for that).  Return ``VmFault.LOCKED`` with the
  page locked, or ``VmFault(0)`` with it unlocked; ``VmFault.MAJOR`` may be or-ed in when
  I/O was needed; ``SIGBUS`` beyond end of file; ``OOM``/``NOPAGE``/``RETRY`` as the kernel.
* ``VmOperations.page_mkwrite(vmf) -> VmFault`` is *optional* (omit it or set it to
  ``None``).  Called before a page of a shared writable mapping becomes writable, with
  ``vmf.page`` set and unlocked.  May sleep, may run several times for one page.  Return
  ``LOCKED`` (page locked by the hook after checking ``page.mapping`` and EOF),
  ``VmFault(0)`` (the core locks it and re-checks ``mapping``), ``NOPAGE`` (truncated:
  retry the access from scratch), ``SIGBUS`` (ENOSPC, EIO...), ``OOM`` or ``RETRY``.
* ``VmOperations.close(vma)`` is optional and async (kernel ``->close``; FUSE writes back).
  ``mmap`` copies ``file.vm_ops`` into the VMA once (``vma.vm_ops``), as the kernel does;
  the hook itself is looked up on that object at each fault.  A hook that needs the era
  finds it in ``vmf.vma.mm.profile``; the faulting task is ``vmf.task``.
* ``AddressSpaceOperations.readpage(page)`` fills ``page.data`` and sets ``uptodate``;
  ``writepage(page)`` writes a locked-then-unlocked page under PG_writeback.  Both raise
  ``SimError(errno)`` on I/O error.
* ``MappedFile`` is an *open file*: its ``mapping`` (the page cache), ``a_ops``,
  ``vm_ops``, ``i_size`` in bytes, ``readable``/``writable`` (FMODE_READ/WRITE),
  ``accounts_dirty`` (the backing device does dirty accounting, so modern kernels
  write-protect shared writable mappings even without ``page_mkwrite``; tmpfs: False) and
  ``fsync(start, end)`` (what ``msync(MS_SYNC)`` calls; raises ``SimError``).  Optional:
  ``file_update_time()`` (called by the core when there is no hook) and
  ``async balance_dirty_pages_ratelimited()`` (called after the fault path newly dirtied a
  page: dirty throttling lives in the filesystem/bdi model).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sim_mmu.page import AddressSpace, Page

if TYPE_CHECKING:
    from sim_mmu.vma import Vma


class VmFault(enum.Flag):
    """Results of fault handlers (kernel: ``enum vm_fault_reason``)."""

    OOM = 0x000001
    SIGBUS = 0x000002
    MAJOR = 0x000004
    WRITE = 0x000008  # do_wp_page broke COW / reused (pre-6.x VM_FAULT_WRITE; GUP uses it)
    HWPOISON = 0x000010
    SIGSEGV = 0x000040
    NOPAGE = 0x000100
    LOCKED = 0x000200
    RETRY = 0x000400
    COMPLETED = 0x004000


#: The results that are errors (kernel: VM_FAULT_ERROR).
VM_FAULT_ERROR = VmFault.OOM | VmFault.SIGBUS | VmFault.SIGSEGV | VmFault.HWPOISON


class FaultFlag(enum.IntFlag):
    """``vmf->flags`` (kernel: ``enum fault_flag``)."""

    WRITE = 0x01
    MKWRITE = 0x02
    ALLOW_RETRY = 0x04
    RETRY_NOWAIT = 0x08
    KILLABLE = 0x10
    TRIED = 0x20
    USER = 0x40
    REMOTE = 0x80  # get_user_pages on behalf of another task


class VmFaultInfo:
    """One fault being handled (kernel: ``struct vm_fault``)."""

    __slots__ = ("address", "flags", "page", "pgoff", "task", "vma")

    def __init__(self, vma: Vma, address: int, pgoff: int, flags: int, task: object = None) -> None:
        self.vma = vma
        self.address = address
        self.pgoff = pgoff
        self.flags = flags  # an int of FaultFlag bits (test with FaultFlag members)
        self.page: Page | None = None
        self.task = task

    @property
    def file(self) -> MappedFile:
        if self.vma.file is None:
            raise AttributeError("anonymous mapping has no file")
        return self.vma.file

    @property
    def mapping(self) -> AddressSpace:
        return self.file.mapping

    def __repr__(self) -> str:
        flags = FaultFlag(self.flags)
        return f"<vm_fault {self.address:#x} pgoff={self.pgoff} {flags!r} page={self.page!r}>"


@runtime_checkable
class VmOperations(Protocol):
    """A mapped file's fault handlers (kernel: ``struct vm_operations_struct``).

    ``page_mkwrite`` (optional) has the signature
    ``async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault``; a filesystem without
    write notification leaves it out or sets it to ``None``.
    """

    async def fault(self, vmf: VmFaultInfo) -> VmFault: ...


PageMkwrite = Callable[[VmFaultInfo], Awaitable[VmFault]]


@runtime_checkable
class AddressSpaceOperations(Protocol):
    """Page I/O (kernel: ``struct address_space_operations``)."""

    async def readpage(self, page: Page) -> None: ...

    async def writepage(self, page: Page) -> None: ...


@runtime_checkable
class MappedFile(Protocol):
    """What ``mmap`` needs from an open file (kernel: ``struct file`` + inode bits)."""

    @property
    def mapping(self) -> AddressSpace: ...

    @property
    def a_ops(self) -> AddressSpaceOperations: ...

    @property
    def vm_ops(self) -> VmOperations: ...

    @property
    def i_size(self) -> int: ...

    @property
    def readable(self) -> bool: ...

    @property
    def writable(self) -> bool: ...

    @property
    def accounts_dirty(self) -> bool: ...

    async def fsync(self, start: int, end: int) -> None: ...


def page_mkwrite_of(vm_ops: Any) -> PageMkwrite | None:
    """The file's ``page_mkwrite``, or None when it has none."""
    hook = getattr(vm_ops, "page_mkwrite", None)
    return hook if callable(hook) else None


class Prot(enum.Flag):
    """``mmap``/``mprotect`` protection (PROT_*)."""

    NONE = 0
    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4


class MapFlags(enum.Flag):
    """``mmap`` flags (MAP_*), the subset the simulator models."""

    SHARED = 0x01
    PRIVATE = 0x02
    FIXED = 0x10
    ANONYMOUS = 0x20
    FIXED_NOREPLACE = 0x100000


class MsFlags(enum.Flag):
    """``msync`` flags (MS_*)."""

    ASYNC = 0x1
    INVALIDATE = 0x2
    SYNC = 0x4
