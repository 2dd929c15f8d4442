"""ftruncate up, then a store at the address that gave SIGBUS: now it faults in and lands.

KERNEL.md §6 row 26. The hook (or shmem's fault) takes a block for the new page.
"""

from fusefs.scenario import *

setup()
create("/f", pages=1)
writer = spawn("writer")
m = mmap(writer, "/f", pages=2)
store(m, page=1, data=b"x", name="before")
truncate("/f", 2 * PAGE)
store(m, page=1, data=b"y", name="after")
expect("before", "sigbus")
expect("after", "ok")
expect_df(free=per({REFUSING: 15}, default=16))
mount()
expect_data("/f", PAGE, b"y")
