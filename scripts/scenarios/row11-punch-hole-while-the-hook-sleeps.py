"""A hole punched while page_mkwrite sleeps: NOPAGE, a fresh page, the hook again, stored.

KERNEL.md §6 row 11 on a modern kernel: the retried fault gets a new zero page and calls
the hook a second time; the store lands and one block is reserved.
"""

from fusefs.scenario import *

setup(policies=HOOKED, mkwrite_latency=1.0)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
load(m, page=2)
with together():
    store(m, page=2, data=b"P", name="store")
    fallocate("/f", 0, 4 * PAGE, punch=True, delay=0.5, name="punch")
expect("store", "ok")
expect_sim("sigbus", 0)
mount()
expect_attr("/f", "mkwrite_calls", 2)
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0))
expect_data("/f", 2 * PAGE, b"P")
