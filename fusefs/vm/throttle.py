"""Dirty page accounting and throttling of a fusefs filesystem (one backing device).

This module owns how the ``sim_mmu`` writeback model (``sim_mmu.bdi``,
``sim_mmu.writeback``; KERNEL.md §4) is plugged into a :class:`~fusefs.fs.core.Filesystem`:

* ``DirtyConfig``: the simulated machine and device — dirtyable memory (``avail``
  pages), the vm sysctls (``DirtySettings``), the throttle model (``modern``, ``crude``,
  ``off``), where the fault path throttles (``after`` the page was dirtied, as modern
  kernels do in ``fault_dirty_shared_page``, or ``before`` it becomes writable, at the
  start of ``page_mkwrite`` — the seed's design), the device kind and the bandwidth of
  the store the flusher writes to.
* ``DirtyThrottle``: one mount's ``DirtyDomain`` + ``Bdi`` (kernel: the machine's
  ``global_wb_domain`` and the superblock's ``s_bdi``).  Every regular file's page cache
  is attached (``inode_to_bdi``), so dirtying, cleaning, writeback and truncate are
  counted by the page cache itself; ``balance`` is ``balance_dirty_pages_ratelimited``;
  ``run_flusher`` is the device's flusher (``wb_workfn``), writing through a store of
  ``write_bandwidth`` pages/s.

The device kind: ``fuse`` is ``Bdi.fuse`` (``max_ratio`` 1 %, ``strictlimit``:
``fuse_bdi_init``), ``disk`` a plain device.  By default it follows the kernel filesystem
the policy models: ``fuse`` for the ``fuse`` policy (``fuse_page_mkwrite``), ``disk``
for the others (ext4, btrfs, NFS, tmpfs have ordinary bdis).

Root attributes (``user.mkwritefs.*``, registered with ``fusefs.fs.introspect``):
``dirty_pages`` (dirty + writeback) and ``dirty_limit_pages`` (the limit): the device's
own count and share under strictlimit, else the domain's; read-only, ENODATA while the
model is off; settings for the mount's owner (EPERM for others, EINVAL for a bad value,
which changes nothing): ``dirty_throttle`` (none, off, crude, modern; on for good once on),
``dirty_placement``, ``dirty_ratio``, ``dirty_background_ratio``, ``dirty_bytes``,
``dirty_background_bytes``, ``min_ratio``, ``max_ratio``, ``strictlimit``.

Placement and the limit: ``before`` (the seed's) throttles in ``page_mkwrite`` and
reserves the page's room under the hard limit in the same step
(``sim_mmu.writeback.balance_dirty_pages_before``), so dirty + writeback never pass
``limit`` (nor, under strictlimit, the device's share); room not used goes back
(``release``: after the fault path dirtied the page, or at once when ``page_mkwrite``
fails); write(2) takes its room before each page it copies (``before_page``, the
``filedata.WriteCap`` it is given).  ``after`` (the kernel's; write(2) after each page
copied, as ``generic_perform_write``) may pass it by at most the writers' ratelimits.

One machine or several: by default each filesystem is a machine of its own; filesystems
given the same ``DirtyConfig(domain=DirtyDomain(...))`` share one global pool (counts,
thresholds, sysctls, the model), each mount its own device (``mkwritefs``,
``mkwritefs-2``...) with its share of the threshold.

Invariants: every live regular file's mapping is attached to ``bdi`` while the model is
on (``DirtyDomain.check``, run by ``Filesystem.check``, then holds); settings changed here
apply at once (the domain shares ``config.settings``).  write(2) charges the open file
(``Writer`` via ``sim_mmu.bdi.CHARGED_TASK``), stores through mappings the simulated
process's task (the scenario runner charges the storing process).  Known
simplifications: writeback that is not the flusher's (``fsync``, the core's periodic
expiry) takes no device time; ``shmem``-policy files are counted too (the kernel's tmpfs
does not account dirty pages); a filesystem's device stays in a shared domain after the
filesystem is gone (clean, its completions ageing away).
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from fusefs.fs.errors import FsError
from sim_mmu.bdi import CHARGED_TASK, Bdi, DirtyDomain, DirtySettings
from sim_mmu.page import PAGE_SIZE, Page
from sim_mmu.writeback import (
    DirtyRecorder,
    FixedBandwidthDevice,
    balance_dirty_pages_before,
    balance_dirty_pages_ratelimited,
    release_dirty,
    run_flusher,
)

if TYPE_CHECKING:
    from fusefs.fs.filedata import FileData

PLACEMENTS = ("after", "before")
DEVICES = ("fuse", "disk")


@dataclass
class DirtyConfig:
    """How a filesystem's dirty pages are limited (see the module docstring)."""

    memory_pages: int = 8192  # dirtyable memory of the simulated machine (32 MiB)
    throttle: str = "modern"  # "modern" | "crude" | "off"
    placement: str = "after"  # "after" | "before"
    device: str | None = None  # "fuse" | "disk"; None: "fuse" under the fuse policy
    write_bandwidth: float = 256.0  # pages/s the flusher's store takes (1 MiB/s)
    max_ratio: float | None = None  # None: the device's default (fuse 1, disk 100)
    min_ratio: float = 0.0  # the device's guaranteed share of thresh (%)
    strictlimit: bool | None = None  # None: the device's default (fuse True)
    record_interval: float | None = None  # sample a time series every so many s (plots)
    measured: bool = False  # the estimate starts at write_bandwidth, not the kernel's 100 MB/s
    settings: DirtySettings = field(default_factory=DirtySettings)
    # The machine to join: several filesystems given the same DirtyDomain share one
    # global pool (thresholds, counts, the model); None: a machine of its own.
    domain: DirtyDomain | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> DirtyConfig:
        """A copy of the settings that still names the same machine (``domain``)."""
        clone = copy.copy(self)
        for f in dataclasses.fields(self):
            if f.name != "domain":
                setattr(clone, f.name, copy.deepcopy(getattr(self, f.name), memo))
        return clone

    def __post_init__(self) -> None:
        if self.memory_pages <= 0:
            raise ValueError(f"memory_pages must be > 0, not {self.memory_pages}")
        if self.throttle not in DirtyDomain.THROTTLES:
            raise ValueError(f"throttle must be one of {DirtyDomain.THROTTLES}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}")
        if self.device is not None and self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}")
        if not self.write_bandwidth > 0:
            raise ValueError("write_bandwidth must be > 0 pages/s")
        if self.record_interval is not None and not self.record_interval > 0:
            raise ValueError("record_interval must be > 0 s")


class _StoreAops:
    """The flusher's ``writepage``: the filesystem's own (block allocation, loss on
    ENOSPC), then the page's transfer to the store while PG_writeback is set."""

    def __init__(self, data: FileData, device: FixedBandwidthDevice) -> None:
        self.data = data
        self.device = device

    async def readpage(self, page: Page) -> None:
        page.data[:] = bytes(PAGE_SIZE)
        page.uptodate = True

    async def writepage(self, page: Page) -> None:
        await self.data.writepage(page)
        if page.mapping is not None:  # not dropped (past EOF, or lost to ENOSPC)
            await self.device.transfer(1)


class Writer:
    """Who write(2) charges: one open file description (the kernel charges the calling
    task; through FUSE every request runs in a trio task of its own, so the open file is
    what lasts from one request of a ``dd`` to the next, with its carried pause debt)."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name


class DirtyThrottle:
    """One mount's dirty-page domain and backing device."""

    def __init__(self, config: DirtyConfig, *, fuse_policy: bool) -> None:
        self.config = config
        if config.domain is None:
            self.domain = DirtyDomain(
                config.memory_pages, config.settings, throttle=config.throttle
            )
        else:  # join the machine: its sysctls and memory are this mount's too
            self.domain = config.domain
            self.domain.throttle = config.throttle
            config.settings = self.domain.settings
            config.memory_pages = self.domain.avail
        device = config.device or ("fuse" if fuse_policy else "disk")
        self.device_kind = device
        taken = {b.name for b in self.domain.bdis}
        name = "mkwritefs"
        if name in taken:  # another mount of the machine: mkwritefs-2, -3...
            name = next(f"mkwritefs-{i}" for i in range(2, len(taken) + 2)
                        if f"mkwritefs-{i}" not in taken)  # fmt: skip
        self.bdi = Bdi.fuse(self.domain, name) if device == "fuse" else Bdi(self.domain, name)
        max_ratio = self.bdi.max_ratio if config.max_ratio is None else config.max_ratio
        self.bdi.set_ratios(config.min_ratio, max_ratio)
        if config.strictlimit is not None:
            self.bdi.strictlimit = config.strictlimit
        self.store = FixedBandwidthDevice(config.write_bandwidth)
        if config.measured:  # as after an earlier run measured it (INIT_BW otherwise)
            bdi, bw = self.bdi, config.write_bandwidth
            bdi.write_bw = bdi.avg_write_bw = bdi.dirty_ratelimit = bw
            bdi.balanced_dirty_ratelimit = bw
        self.flusher_running = False
        # The time series (virtual then real time), when asked for: DirtyRecorder.plot.
        self.recorder = (
            DirtyRecorder(self.domain, interval=config.record_interval)
            if config.record_interval
            else None
        )

    @property
    def placement(self) -> str:
        return self.config.placement

    def attach(self, data: FileData) -> None:
        self.bdi.attach(data.mapping, _StoreAops(data, self.store))

    def detach(self, data: FileData) -> None:
        if data.mapping.bdi is self.bdi:
            self.bdi.detach(data.mapping)

    async def balance(self, data: FileData) -> None:
        """``balance_dirty_pages_ratelimited`` for the current task."""
        await balance_dirty_pages_ratelimited(self.bdi)

    async def balance_before(self, data: FileData) -> None:
        """The seed's placement (``page_mkwrite``, before the page can become
        writable): the model's pauses, then room for the page under the hard limit,
        held until the fault dirtied it (``balance_dirty_pages_before``)."""
        await balance_dirty_pages_before(self.bdi)

    def release(self) -> None:
        """The fault (or write) is over: room reserved and not dirtied goes back (a page
        that was dirty already)."""
        release_dirty(self.bdi)

    # write(2) under the seed's placement (``filedata.WriteCap``): room for each page
    # before it is copied, so write(2) is held under the hard limit as stores are.
    before_page = balance_before

    def charging(self, writer: Writer) -> contextvars.Token[Any]:
        """Charge ``writer`` for what follows (reset with ``CHARGED_TASK.reset``)."""
        return CHARGED_TASK.set(writer)

    async def run_flusher(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The device's flusher, and the recorder's sampling when there is one."""
        self.flusher_running = True
        try:
            async with trio.open_nursery() as nursery:
                if self.recorder is not None:
                    await nursery.start(self.recorder.run)
                await nursery.start(run_flusher, self.bdi)
                task_status.started()
        finally:
            self.flusher_running = False

    def dirty_pages(self) -> int:
        """Dirty + under writeback, as ``limit_pages`` counts them: the device's own
        under strictlimit, else the machine's (every device of the domain)."""
        return self.bdi.wb_dirty if self.bdi.strictlimit else self.domain.dirty

    def limit_pages(self) -> int:
        """The hard limit that binds this mount: its own share under strictlimit, else
        the domain's ``limit`` (throttling stops writers there)."""
        lim = self.domain.limits()
        if self.bdi.strictlimit:
            return self.bdi.wb_thresh(lim)
        return lim.limit


# -- settings (root xattrs user.mkwritefs.*) ------------------------------------------------
def _number(value: bytes, what: str) -> float:
    try:
        text = value.decode("ascii").strip()
        number = float(text)
    except (UnicodeDecodeError, ValueError):
        raise FsError(errno.EINVAL, f"{what}: {value!r} is not a number") from None
    if not 0 <= number <= 100:  # NaN fails too
        raise FsError(errno.EINVAL, f"{what} must be 0..100, not {text}")
    return number


def set_vm_ratio(config: DirtyConfig, name: str, value: bytes) -> None:
    """``dirty_ratio`` or ``dirty_background_ratio``; EINVAL changes nothing.  As in the
    kernel, setting a ratio clears its ``*_bytes`` counterpart."""
    number = _number(value, name)
    trial = copy.copy(config.settings)
    setattr(trial, name, number)
    setattr(trial, name.replace("_ratio", "_bytes"), 0)
    try:
        trial.validate()
    except ValueError as exc:
        raise FsError(errno.EINVAL, str(exc)) from None
    setattr(config.settings, name, number)
    setattr(config.settings, name.replace("_ratio", "_bytes"), 0)


def set_vm_bytes(config: DirtyConfig, name: str, value: bytes) -> None:
    """``dirty_bytes`` or ``dirty_background_bytes`` (0: use the ratio); as in the kernel,
    a non-zero value clears its ``*_ratio`` counterpart.  EINVAL changes nothing."""
    text = value.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise FsError(errno.EINVAL, f"{name}: {text!r} is not a byte count")
    number = int(text)
    if name == "dirty_bytes" and 0 < number < 2 * PAGE_SIZE:  # the kernel's minimum
        raise FsError(errno.EINVAL, f"dirty_bytes must be 0 or >= {2 * PAGE_SIZE}")
    setattr(config.settings, name, number)
    if number:
        setattr(config.settings, name.replace("_bytes", "_ratio"), 0.0)


def set_min_ratio(config: DirtyConfig, throttle: DirtyThrottle | None, value: bytes) -> None:
    number = _number(value, "min_ratio")
    if throttle is not None:
        try:
            throttle.bdi.set_ratios(number, throttle.bdi.max_ratio)
        except ValueError as exc:
            raise FsError(errno.EINVAL, str(exc)) from None
    elif number > max_ratio_of(config, None):
        raise FsError(errno.EINVAL, "min_ratio must not exceed max_ratio")
    config.min_ratio = number


def set_max_ratio(config: DirtyConfig, throttle: DirtyThrottle | None, value: bytes) -> None:
    number = _number(value, "max_ratio")
    if throttle is not None:
        try:
            throttle.bdi.set_ratios(throttle.bdi.min_ratio, number)
        except ValueError as exc:
            raise FsError(errno.EINVAL, str(exc)) from None
    elif number < config.min_ratio:
        raise FsError(errno.EINVAL, "max_ratio must not be below min_ratio")
    config.max_ratio = number


def set_strictlimit(config: DirtyConfig, throttle: DirtyThrottle | None, value: bytes) -> None:
    """``strict_limit`` as the sysfs file takes it: 0 or 1."""
    text = value.strip()
    if text not in (b"0", b"1"):
        raise FsError(errno.EINVAL, f"strictlimit is 0 or 1, not {value!r}")
    config.strictlimit = text == b"1"
    if throttle is not None:
        throttle.bdi.strictlimit = config.strictlimit


def choice(value: bytes, allowed: tuple[str, ...], what: str) -> str:
    text = value.decode("ascii", "replace").strip().lower()
    if text not in allowed:
        raise FsError(errno.EINVAL, f"{what} must be one of {', '.join(allowed)}")
    return text


Figure = Callable[[DirtyConfig, "DirtyThrottle | None"], int | str]


def _ratio(value: float) -> str:
    return repr(int(value)) if value == int(value) else repr(value)


def max_ratio_of(config: DirtyConfig, throttle: DirtyThrottle | None) -> float:
    if throttle is not None:
        return throttle.bdi.max_ratio
    if config.max_ratio is not None:
        return config.max_ratio
    return 1.0 if config.device == "fuse" else 100.0


def strictlimit_of(config: DirtyConfig, throttle: DirtyThrottle | None) -> bool:
    if throttle is not None:
        return throttle.bdi.strictlimit
    if config.strictlimit is not None:
        return config.strictlimit
    return config.device == "fuse"


FIGURES: dict[str, Figure] = {
    "dirty_ratio": lambda c, t: _ratio(c.settings.dirty_ratio),
    "dirty_background_ratio": lambda c, t: _ratio(c.settings.dirty_background_ratio),
    "dirty_bytes": lambda c, t: c.settings.dirty_bytes,
    "dirty_background_bytes": lambda c, t: c.settings.dirty_background_bytes,
    "min_ratio": lambda c, t: _ratio(t.bdi.min_ratio if t is not None else c.min_ratio),
    "max_ratio": lambda c, t: _ratio(max_ratio_of(c, t)),
    "strictlimit": lambda c, t: int(strictlimit_of(c, t)),
}
