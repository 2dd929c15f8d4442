"""Space left: a store into a hole takes its block at once (reserved), not at writeback.

KERNEL.md §6 row 2. reserve and reserve-cow reserve a block in page_mkwrite (delayed
allocation: df drops by one before any writeback); shmem allocates at the fault; legacy,
fuse and cache take nothing until writeback. After msync every policy has one block
allocated and none reserved.
"""

from fusefs.scenario import *

setup(capacity=4)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"B", name="store")
expect_df(free=per({REFUSING: 3}, default=4), when="after the store")
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0), when="after the store")
msync(m, name="msync")
mount()
expect("msync", "ok")
expect_df(free=3, reserved=0, allocated=1)
expect_data("/f", 0, b"B")
