"""Load for the concurrency tests: what one real process or thread does on the mount.

`fs_worker` does random namespace and I/O work in its own directory and in a directory
all workers share (create, write, read back, rename, link, unlink, mkdir, rmdir,
truncate, fsync, listdir, statvfs, getxattr of the root's figures), and verifies every
byte it reads of its own files. Races with the other workers in the shared directory
(a name taken or gone) are answered with the errno Linux gives (ENOENT, EEXIST,
ENOTEMPTY); ENOSPC is a clean answer too; anything else (EIO above all) fails the worker.

`mmap_worker` maps a file shared with the simulated processes (`MAP_SHARED`), stores
into its own pages through the real MMU, msyncs, and checks the stores with pread.
Only in a process of its own: a store through a real mapping of a file on the mount,
made from the thread serving it, would deadlock.

Run as `python workers.py fs|mmap ARGS...`; it prints one JSON line of counts.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import random
import sys

PAGE = 4096
CLEAN = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOSPC}


def fs_worker(root: str, ident: str, seed: int, ops: int, faults: int = 0) -> dict[str, int]:
    """`faults`: the disk fails writes now and then, so fsync may answer EIO (counted);
    no other call may."""
    rnd = random.Random(seed)
    mine = os.path.join(root, f"w-{ident}")
    shared = os.path.join(root, "shared-dir")
    os.makedirs(shared, exist_ok=True)
    os.mkdir(mine)
    files: dict[str, bytes] = {}  # my files (in `mine`) and what they hold
    counts = {"ops": 0, "clean_errors": 0, "bytes_verified": 0, "fsync_eio": 0}

    def new_name() -> str:
        return f"{ident}-{rnd.randrange(1 << 30)}"

    def act() -> None:
        what = rnd.choice(["write", "write", "read", "read", "rename", "link", "unlink",
                           "truncate", "shared", "shared", "dir", "stat"])  # fmt: skip
        if what == "write" or not files:
            name = rnd.choice(list(files)) if files and rnd.random() < 0.5 else new_name()
            data = rnd.randbytes(rnd.choice([1, 100, PAGE, 3 * PAGE + 7, 40_000]))
            offset = rnd.choice([0, 0, len(files.get(name, b""))])
            old = files.get(name, b"")
            fd = os.open(os.path.join(mine, name), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                written = os.pwrite(fd, data, offset)
                if rnd.random() < 0.2:
                    try:
                        os.fsync(fd)
                    except OSError as exc:  # the data stays written (and readable)
                        if not (faults and exc.errno == errno.EIO):
                            raise
                        counts["fsync_eio"] += 1
            finally:
                os.close(fd)
            new = old.ljust(offset, b"\0")[:offset] + data[:written] + old[offset + written :]
            files[name] = new
        elif what == "read":
            name = rnd.choice(list(files))
            with open(os.path.join(mine, name), "rb") as f:
                got = f.read()
            assert got == files[name], f"{name}: read {len(got)} bytes, expected {len(files[name])}"
            counts["bytes_verified"] += len(got)
        elif what == "rename":
            name = rnd.choice(list(files))
            new = new_name()
            os.rename(os.path.join(mine, name), os.path.join(mine, new))
            files[new] = files.pop(name)
        elif what == "link":
            name = rnd.choice(list(files))
            new = new_name()
            os.link(os.path.join(mine, name), os.path.join(mine, new))
            files[new] = files[name]
            os.unlink(os.path.join(mine, name))
            del files[name]
        elif what == "unlink":
            name = rnd.choice(list(files))
            os.unlink(os.path.join(mine, name))
            del files[name]
        elif what == "truncate":
            name = rnd.choice(list(files))
            size = rnd.randrange(0, 2 * PAGE)
            os.truncate(os.path.join(mine, name), size)
            files[name] = files[name][:size].ljust(size, b"\0")
        elif what == "shared":  # races with the other workers: names come and go
            target = os.path.join(shared, f"s{rnd.randrange(8)}")
            step = rnd.choice(["create", "rename", "unlink", "read", "list", "mkdir", "rmdir"])
            if step == "create":
                with open(target, "ab") as f:
                    f.write(ident.encode())
            elif step == "rename":
                os.rename(target, os.path.join(shared, f"s{rnd.randrange(8)}"))
            elif step == "unlink":
                os.unlink(target)
            elif step == "read":
                with open(target, "rb") as f:
                    f.read()
            elif step == "list":
                os.listdir(shared)
            elif step == "mkdir":
                os.mkdir(target + "d")
            else:
                os.rmdir(target + "d")
        elif what == "dir":
            d = os.path.join(mine, "sub")
            if os.path.isdir(d):
                os.rmdir(d)
            else:
                os.mkdir(d)
        else:
            os.statvfs(root)
            int(os.getxattr(root, "user.mkwritefs.free_blocks"))

    for _ in range(ops):
        try:
            act()
        except OSError as exc:
            if exc.errno not in CLEAN:
                raise
            counts["clean_errors"] += 1
        counts["ops"] += 1
    for name, data in files.items():  # everything I was told is written is there
        with open(os.path.join(mine, name), "rb") as f:
            assert f.read() == data, name
        counts["bytes_verified"] += len(data)
    return counts


def mmap_worker(path: str, first_page: int, pages: int, seed: int, rounds: int,
                faults: int = 0) -> dict[str, int]:  # fmt: skip
    rnd = random.Random(seed)
    counts = {"stores": 0, "msyncs": 0, "bytes_verified": 0, "msync_eio": 0}
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size, mmap.MAP_SHARED)
        try:
            last: dict[int, bytes] = {}
            for r in range(rounds):
                for p in range(first_page, first_page + pages):
                    data = f"real {first_page} r{r} p{p} {rnd.randrange(1 << 30)}".encode()
                    m[p * PAGE : p * PAGE + len(data)] = data
                    last[p] = data
                    counts["stores"] += 1
                try:
                    m.flush()  # msync(MS_SYNC): through the server
                except OSError as exc:  # only from a failing disk
                    if not (faults and exc.errno == errno.EIO):
                        raise
                    counts["msync_eio"] += 1
                counts["msyncs"] += 1
                for p, data in last.items():
                    assert os.pread(fd, len(data), p * PAGE) == data, (p, data)
                    counts["bytes_verified"] += len(data)
        finally:
            m.close()
    finally:
        os.close(fd)
    return counts


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "fs":
        result = fs_worker(args[0], args[1], *map(int, args[2:]))
    else:
        result = mmap_worker(args[0], *map(int, args[1:]))
    print(json.dumps(result))
