"""munmap without msync: the page stays dirty and is written later, its block held till then.

KERNEL.md §6 row 20. fuse writes back at unmap (fuse_vma_close); the others keep the
dirty page (and its reservation) until the flusher writes it.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=1, data=b"m")
munmap(m)
expect_attr("/f", "dirty_pages", per(fuse=0, default=1), when="after munmap")
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0), when="after munmap")
writeback()
mount()
expect_data("/f", PAGE, b"m")
expect_df(allocated=1, reserved=0)
