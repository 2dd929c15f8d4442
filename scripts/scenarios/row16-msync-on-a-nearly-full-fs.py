"""Four stores, two free blocks, msync: SIGBUS at the store, or ENOSPC at msync and loss.

KERNEL.md §6 row 16 (and row 1 on a larger scale). Refusing policies acknowledge two
stores and SIGBUS the others; msync then succeeds and nothing acknowledged is lost.
The others acknowledge all four; writeback gives pages 0 and 1 the two blocks, drops
pages 2 and 3, and msync reports ENOSPC once.
"""

from fusefs.scenario import *

setup(capacity=8)
create("/f", pages=4)
fill(6)
writer = spawn("writer")
m = mmap(writer, "/f")
for i in range(4):
    store(m, page=i, data=b"page %d" % i, name=f"store {i}")
msync(m, name="msync")
msync(m, name="msync again")
mount()
expect("store 1", "ok")
expect("store 2", per({REFUSING: "sigbus"}, default="ok"))
expect("msync", per({REFUSING: "ok"}, default="ENOSPC"))
expect("msync again", "ok")
expect_data("/f", PAGE, b"page 1")
expect_data("/f", 2 * PAGE, b"\0" * 6)
expect_attr("/f", "lost_bytes", per({REFUSING: 0}, default=2 * PAGE))
expect_df(free=0, reserved=0)
