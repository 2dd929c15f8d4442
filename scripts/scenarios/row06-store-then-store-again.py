"""A store to a page not present: one fault does it all; a second store faults no more.

KERNEL.md §6 rows 6 and 7: read-in, page_mkwrite and a writable dirty PTE in a single
fault; the second store to the dirty page takes no fault, no hook call and no extra
reservation.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"x", name="first store")
expect_sim("faults", 1, when="after the first store")
expect_pte(m, 0, writable=True, dirty=True)
store(m, page=0, data=b"y", name="second store")
expect_sim("faults", 1, when="after the second store")
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0))
mount()
expect_attr("/f", "mkwrite_calls", per({HOOKED: 1}, default=0))
expect_data("/f", 0, b"y")
