"""Store, writeback, store again: writeback write-protected the PTE, so the hook runs again.

KERNEL.md §6 row 8. The allocated block needs no new space (reserve-cow: one for the
copy); the page is dirty again and the second store reaches the file.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"1")
msync(m)
expect_pte(m, 0, writable=per(shmem=True, default=False), when="after msync")
store(m, page=0, data=b"2", name="second store")
expect("second store", "ok")
expect_df(allocated=1, reserved=per(reserve_cow=1, default=0), when="after the second store")
expect_attr("/f", "dirty_pages", 1)
msync(m)
mount()
expect_attr("/f", "mkwrite_calls", per({HOOKED: 2}, default=0))
expect_df(allocated=1, reserved=0)
expect_data("/f", 0, b"2")
