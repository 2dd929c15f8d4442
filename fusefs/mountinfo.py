"""The mount table as the kernel reports it (/proc/self/mountinfo), read without
touching the mounts themselves.

`os.path.ismount` stats the directory, which fails with ENOTCONN on a FUSE mount whose
server died and blocks while a live server has not yet answered INIT; the server must
never make a system call on its own mount from its request loop. mountinfo has neither
problem. Paths there are real paths with space, tab, newline and backslash escaped as
octal (`\\040`...), which `find` undoes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True, slots=True)
class MountEntry:
    mountpoint: str
    fstype: str  # "fuse.mkwritefs" for ours
    device: str  # "major:minor", the name of the mount's bdi in /sys/class/bdi


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find(mountpoint: str) -> MountEntry | None:
    """The mount on `mountpoint` (a real path) visible now, or None."""
    found = None
    with open(MOUNTINFO) as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if _unescape(fields[4]) == mountpoint:
                sep = fields.index("-")
                # The last mount on a path is the one on top.
                found = MountEntry(mountpoint, fields[sep + 1], fields[2])
    return found
