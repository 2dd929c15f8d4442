"""The writer of the crash test: runs on a store's mount until it is killed.

Usage: crash_writer.py MOUNT LOG ROUND SEED.  It writes to four files of its round and,
after each fsync/msync(MS_SYNC) *returned*, appends one JSON line to LOG saying what is
now guaranteed (tests/store/test_crash.py checks it after the server was SIGKILLed):

* ``a{R}``: appends of random sizes, content ``pattern(R)`` at every offset; fsync ->
  {"a": size};
* ``b{R}``: 16 pages overwritten in random order with whole versioned pages (pwrite);
  fsync -> {"b": {page: version}};
* ``c{R}``: 32 pages stored through a real shared mmap, in order, msync(MS_SYNC) every
  few pages -> {"c": pages};
* ``m{R}-{n}``: small new files, each fsynced -> {"m": name};
* an unlinked-open file written and fsynced (an orphan if the server dies first).

Pages (b, c) carry a header (magic, index, version) and a body derived from it, so a
page read back can be told whole or torn.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import random
import struct
import sys

PAGE = 4096
MAGIC = 0x57524954
PERIOD = 65521
B_PAGES = 16
C_PAGES = 32


@functools.cache
def pattern(round_: int) -> bytes:
    return random.Random(f"a{round_}").randbytes(PERIOD)


def a_bytes(round_: int, start: int, end: int) -> bytes:
    """File a's bytes [start, end): the round's pattern repeated from offset 0."""
    p = pattern(round_)
    n = end - start
    return (p[start % PERIOD :] + p * (n // PERIOD + 1))[:n]


def page(kind: str, round_: int, index: int, version: int) -> bytes:
    head = struct.pack("<IIII", MAGIC, round_, index, version)
    body = random.Random(f"{kind}{round_}.{index}.{version}").randbytes(PAGE - len(head))
    return head + body


def page_version(kind: str, round_: int, index: int, data: bytes) -> int | None:
    """The version of a whole page; 0 for never written (zeros); None when torn."""
    if data == bytes(PAGE):
        return 0
    magic, r, i, version = struct.unpack("<IIII", data[:16])
    if (magic, r, i) != (MAGIC, round_, index) or data != page(kind, round_, index, version):
        return None
    return version


def main() -> None:
    mnt, log_path, round_, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(**what: object) -> None:
        os.write(log, (json.dumps(what) + "\n").encode())

    a = os.open(f"{mnt}/a{round_}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    b = os.open(f"{mnt}/b{round_}", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(b, B_PAGES * PAGE)
    c = os.open(f"{mnt}/c{round_}", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(c, C_PAGES * PAGE)
    cmap = mmap.mmap(c, C_PAGES * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    orphan_path = f"{mnt}/orphan{round_}"
    orphan = os.open(orphan_path, os.O_RDWR | os.O_CREAT, 0o644)
    os.unlink(orphan_path)
    os.write(orphan, b"o" * 3 * PAGE)
    os.fsync(orphan)
    note(ready=True)

    size = 0
    versions = [0] * B_PAGES
    c_done = 0
    made = 0
    step = 0
    while True:
        step += 1
        n = rng.randint(1, 20000)
        os.write(a, a_bytes(round_, size, size + n))
        size += n
        i = rng.randrange(B_PAGES)
        versions[i] += 1
        os.pwrite(b, page("b", round_, i, versions[i]), i * PAGE)
        if c_done < C_PAGES:
            cmap[c_done * PAGE : (c_done + 1) * PAGE] = page("c", round_, c_done, 1)
            c_done += 1
        if step % 3 == 0:
            os.fsync(a)
            note(a=size)
        if step % 4 == 0:
            os.fsync(b)
            note(b=dict(enumerate(versions)))
        if step % 5 == 0 and c_done:
            cmap.flush()  # msync(MS_SYNC)
            note(c=c_done)
        if step % 7 == 0:
            name = f"m{round_}-{made}"
            fd = os.open(f"{mnt}/{name}", os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, name.encode() * 100)
            os.fsync(fd)
            os.close(fd)
            made += 1
            note(m=name)


if __name__ == "__main__":
    main()
