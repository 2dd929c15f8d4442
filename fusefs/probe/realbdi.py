"""The real kernel's backing device of a mount, beside the simulated one.

This module owns reading what the running kernel set for a mount's ``backing_dev_info``
from ``/sys/class/bdi/<major:minor>/`` — ``max_ratio``, ``min_ratio``, ``strict_limit``
(5.x+: absent on older kernels) — and putting it next to the dirty model's simulated
values (``user.mkwritefs.max_ratio``, ``strictlimit``, ``dirty_pages``,
``dirty_limit_pages``, ``dirty_throttle``) for ``mkwritefs stat``.

The device name is the mount's ``st_dev`` as ``major:minor``, taken from
``/proc/self/mountinfo`` (``fusefs.mountinfo``): reading it there makes no system call on
the mount (a FUSE mount must not be stat'ed from the thread serving it, and a dead
server's mount answers ENOTCONN).  For a FUSE mount the kernel's ``fuse_bdi_init`` sets
``max_ratio`` 1 and, until the 2025 change that may drop it, ``strict_limit`` 1
(KERNEL.md §4).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from fusefs import mountinfo
from fusefs.constants import XATTR_PREFIX

SYSFS_BDI = "/sys/class/bdi"
#: The dirty model's names on the root, in the order ``stat`` prints them.
SIMULATED = (
    "dirty_throttle",
    "dirty_pages",
    "dirty_limit_pages",
    "dirty_ratio",
    "dirty_background_ratio",
    "min_ratio",
    "max_ratio",
    "strictlimit",
)


@dataclass(frozen=True)
class RealBdi:
    """One device's knobs as sysfs shows them; None where the file is absent."""

    device: str
    max_ratio: int | None
    min_ratio: int | None
    strict_limit: int | None


def device_of(mountpoint: str) -> str:
    """``major:minor`` of the mount on ``mountpoint`` (ValueError if none)."""
    entry = mountinfo.find(os.path.realpath(mountpoint))
    if entry is None:
        raise ValueError(f"{mountpoint} is not a mount point")
    return entry.device


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def read_real_bdi(mountpoint: str, *, sysfs: str = SYSFS_BDI) -> RealBdi:
    """What the kernel set for the mount's backing device."""
    device = device_of(mountpoint)
    base = os.path.join(sysfs, device)
    return RealBdi(
        device,
        _read_int(os.path.join(base, "max_ratio")),
        _read_int(os.path.join(base, "min_ratio")),
        _read_int(os.path.join(base, "strict_limit")),
    )


def read_simulated(mountpoint: str) -> dict[str, str | None]:
    """The dirty model's values from the root's xattrs; None where there is none
    (``dirty_pages``/``dirty_limit_pages`` while ``dirty_throttle`` is none)."""
    values: dict[str, str | None] = {}
    for name in SIMULATED:
        try:
            values[name] = os.getxattr(mountpoint, XATTR_PREFIX + name).decode()
        except OSError:
            values[name] = None
    return values


def beside(mountpoint: str) -> dict[str, object]:
    """{"simulated": {...}, "kernel": {...}} for ``mkwritefs stat --json``."""
    return {"simulated": read_simulated(mountpoint), "kernel": asdict(read_real_bdi(mountpoint))}


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


def stat_lines(mountpoint: str) -> list[str]:
    """The dirty model's values and the real kernel's, side by side, for ``stat``."""
    sim = read_simulated(mountpoint)
    real = read_real_bdi(mountpoint)
    lines = [f"  dirty throttling       simulated{'':<8}kernel bdi {real.device}"]
    lines += [f"  {'dirty_throttle':<22} {_shown(sim['dirty_throttle']):<16}"]
    for name in ("dirty_pages", "dirty_limit_pages", "dirty_ratio", "dirty_background_ratio"):
        lines.append(f"  {name:<22} {_shown(sim[name]):<16}")
    lines.append(f"  {'max_ratio':<22} {_shown(sim['max_ratio']):<16} {_shown(real.max_ratio)}")
    lines.append(
        f"  {'strictlimit':<22} {_shown(sim['strictlimit']):<16} {_shown(real.strict_limit)}"
    )
    lines.append(f"  {'min_ratio':<22} {_shown(sim['min_ratio']):<16} {_shown(real.min_ratio)}")
    return [line.rstrip() for line in lines]
