"""Run a small mmap program against the real kernel (child process of the differential
tests).  Usage: ``python kernel_runner.py FILE < program.json``.

Each operation's result is printed as one JSON line as soon as it is known, so when a
SIGBUS or SIGSEGV kills this process the parent still has every earlier result and
learns the signal from the exit status.  Memory is touched with ctypes on addresses
returned by libc ``mmap``; nothing here imports sim_mmu.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
for name in ("munmap", "mprotect", "msync"):
    getattr(libc, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    getattr(libc, name).restype = ctypes.c_int
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

PROT = {"none": 0, "r": mmap.PROT_READ, "rw": mmap.PROT_READ | mmap.PROT_WRITE}
TYPE = {"shared": mmap.MAP_SHARED, "private": mmap.MAP_PRIVATE, "neither": 0}
MAP_FIXED = 0x10
MS = {"sync": 4, "async": 1, "invalidate": 2, "bad": 5}
PAGE = mmap.PAGESIZE
MAP_FAILED = ctypes.c_void_p(-1).value


def out(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def check(rc: int) -> str:
    return "ok" if rc == 0 else f"errno {ctypes.get_errno()}"


class Runner:
    def __init__(self, path: str) -> None:
        self.fds = {"rw": os.open(path, os.O_RDWR), "ro": os.open(path, os.O_RDONLY)}
        self.base = 0

    def op(self, op: list) -> object:
        kind, args = op[0], op[1:]
        return getattr(self, "do_" + kind)(*args)

    def do_reserve(self, pages: int) -> str:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self.base = libc.mmap(None, pages * PAGE, 0, flags, -1, 0)
        return "ok"

    def do_mmap(
        self, at: int | None, length: int, prot: str, typ: str, offset: int, fd: str
    ) -> str:
        flags = TYPE[typ] if typ != "both" else mmap.MAP_SHARED | mmap.MAP_PRIVATE
        addr = None
        if at is not None:
            addr, flags = self.base + at, flags | MAP_FIXED
        got = libc.mmap(addr, length, PROT[prot], flags, self.fds[fd], offset)
        return f"errno {ctypes.get_errno()}" if got == MAP_FAILED else "ok"

    def do_munmap(self, at: int, length: int) -> str:
        return check(libc.munmap(self.base + at, length))

    def do_mprotect(self, at: int, length: int, prot: str) -> str:
        return check(libc.mprotect(self.base + at, length, PROT[prot]))

    def do_msync(self, at: int, length: int, how: str) -> str:
        return check(libc.msync(self.base + at, length, MS[how]))

    def do_store(self, at: int, hexdata: str) -> str:
        data = bytes.fromhex(hexdata)
        ctypes.memmove(self.base + at, data, len(data))
        return "ok"

    def do_load(self, at: int, n: int) -> str:
        return ctypes.string_at(self.base + at, n).hex()

    def do_truncate(self, size: int) -> str:
        os.ftruncate(self.fds["rw"], size)
        return "ok"

    def do_pwrite(self, offset: int, hexdata: str) -> str:
        os.pwrite(self.fds["rw"], bytes.fromhex(hexdata), offset)
        return "ok"

    def do_procmem_write(self, at: int, hexdata: str) -> str:
        """A forced write through /proc/self/mem (get_user_pages with FOLL_FORCE)."""
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            return f"wrote {os.pwrite(fd, bytes.fromhex(hexdata), self.base + at)}"
        except OSError as e:
            return f"errno {e.errno}"
        finally:
            os.close(fd)

    def do_procmem_read(self, at: int, n: int) -> str:
        fd = os.open("/proc/self/mem", os.O_RDONLY)
        try:
            return os.pread(fd, n, self.base + at).hex()
        except OSError as e:
            return f"errno {e.errno}"
        finally:
            os.close(fd)

    def do_fork(self, ops: list) -> object:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.dup2(w, 1)
            for sub in ops:
                out(self.op(sub))
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as pipe:
            lines = [json.loads(line) for line in pipe]
        _, status = os.waitpid(pid, 0)
        signo = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        return ["child", lines, signo]


def main() -> None:
    runner = Runner(sys.argv[1])
    for op in json.load(sys.stdin):
        out(runner.op(op))


if __name__ == "__main__":
    main()
