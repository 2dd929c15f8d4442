"""The filesystem core's one error: ``FsError(errno)``.

The core raises ``FsError`` for every user-caused failure (a missing name, a full
filesystem, a bad flag) and nothing else; any other exception escaping the core is a
bug.  The pyfuse3 adapter translates ``FsError`` to ``pyfuse3.FUSEError`` with
``raise ... from None``, so the errno is the whole interface, as it is for a kernel
filesystem returning ``-ENOSPC``.
"""

from __future__ import annotations

import errno as _errno
import os


class FsError(Exception):
    """A failure with an errno, as a system call would report it."""

    def __init__(self, errno: int, detail: str = "") -> None:
        self.errno = errno
        self.detail = detail
        super().__init__(errno, detail)

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        text = f"[{name}] {os.strerror(self.errno)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __repr__(self) -> str:
        return f"FsError({_errno.errorcode.get(self.errno, self.errno)}, {self.detail!r})"
