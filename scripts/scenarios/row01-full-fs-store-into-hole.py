"""A full filesystem, a store into a hole of a shared mapping: SIGBUS, or data lost later.

KERNEL.md §6 row 1. With page_mkwrite reserving a block (reserve, reserve-cow) or the
fault allocating it (shmem), the store is refused at once with SIGBUS and nothing is
dirtied. Without it (legacy) or when the hook does not account space (fuse, cache), the
store is acknowledged, writeback finds no block, the page is dropped and msync reports
ENOSPC once: the program was told its data was stored, and it was not.
"""

from fusefs.scenario import *

setup(capacity=4)
create("/f", pages=4)
fill()
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"A" * 100, name="store into hole")
msync(m, name="msync")
msync(m, name="msync again")
mount()
expect("store into hole", per({REFUSING: "sigbus"}, default="ok"))
expect("msync", per({REFUSING: "ok"}, default="ENOSPC"))
expect("msync again", "ok")
expect_df(free=0, reserved=0)
expect_data("/f", 0, b"\0" * 100)
expect_attr("/f", "lost_bytes", per({REFUSING: 0}, default=PAGE))
expect_attr("/f", "sigbus", per({REFUSING: 1}, default=0))
