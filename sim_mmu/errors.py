"""The simulator's small error family: failed system calls and delivered signals.

A system call that fails raises ``SimError(errno)`` (what the C library would put in
``errno``).  A fault that the kernel resolves by signalling the task raises
``SimSignal`` carrying the ``siginfo`` fields a handler would see: signal number,
``si_code`` and the faulting address.  Both derive from ``SimMmuError`` so a caller can
catch everything the simulator raises on purpose in one place; anything else escaping
from ``sim_mmu`` is a bug.
"""

from __future__ import annotations

import errno as _errno
import os
import signal as _signal
from typing import NamedTuple

SIGBUS = int(_signal.SIGBUS)
SIGSEGV = int(_signal.SIGSEGV)
SIGKILL = int(_signal.SIGKILL)

# si_code values (include/uapi/asm-generic/siginfo.h)
SEGV_MAPERR = 1  # address not mapped to object
SEGV_ACCERR = 2  # invalid permissions for mapped object
BUS_ADRERR = 2  # nonexistent physical address (beyond end of file)
BUS_MCEERR_AR = 4  # hardware memory error consumed (VM_FAULT_HWPOISON)


class SimMmuError(Exception):
    """Base of everything sim_mmu raises on purpose."""


class SimError(SimMmuError):
    """A system call failed with ``errno`` (kernel: a negative return value)."""

    def __init__(self, errno: int, detail: str = "") -> None:
        self.errno = errno
        name = _errno.errorcode.get(errno, str(errno))
        text = f"{name}: {os.strerror(errno)}"
        super().__init__(f"{text} ({detail})" if detail else text)


class SigInfo(NamedTuple):
    """What a signal handler receives (kernel: ``struct kernel_siginfo``)."""

    signo: int
    code: int
    addr: int

    def __str__(self) -> str:
        name = _signal.Signals(self.signo).name
        return f"{name} code={self.code} addr={self.addr:#x}"


class SimSignal(SimMmuError):
    """The simulated task took a signal with no handler installed (default action)."""

    def __init__(self, info: SigInfo) -> None:
        self.info = info
        self.signo = info.signo
        self.code = info.code
        self.addr = info.addr
        super().__init__(str(info))


class ProcessExited(SimMmuError):
    """An operation on a simulated process that has exited (or was killed)."""
