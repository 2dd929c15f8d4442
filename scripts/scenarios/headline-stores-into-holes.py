"""Eight stores into holes with four blocks free: SIGBUS now, or acknowledged and lost.

The headline story. A program maps a sparse file shared and stores a page into each of
its 8 holes on a filesystem with 4 free blocks, then calls msync. With write
notification refusing what it cannot store (reserve, reserve-cow, shmem), 4 stores get
SIGBUS and every acknowledged byte is in the file. Without (legacy, fuse, cache), all 8
are acknowledged, 4 pages are dropped at writeback: 16 KiB the program believes stored.
"""

from fusefs.scenario import *

setup(capacity=64)
create("/sparse", pages=8)
fill(60)
writer = spawn("writer")
m = mmap(writer, "/sparse")
for i in range(8):
    store(m, page=i, data=b"page %d " % i * 512)
msync(m, name="msync")
mount()
expect_sim("sigbus", per({REFUSING: 4}, default=0))
expect("msync", per({REFUSING: "ok"}, default="ENOSPC"))
expect_data("/sparse", 3 * PAGE, b"page 3 " * 512)
expect_data("/sparse", 4 * PAGE, b"\0" * 3584)
expect_attr("/", "lost_bytes", per({REFUSING: 0}, default=4 * PAGE))
expect_df(free=0, reserved=0)
