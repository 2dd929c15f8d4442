"""ftruncate while page_mkwrite sleeps: the hook finds its page gone, the store gets SIGBUS.

KERNEL.md §6 row 10. The hook answers NOPAGE, the fault is retried past the new EOF
and the store is refused; the reservation is released, nothing leaks.
"""

from fusefs.scenario import *

setup(policies=HOOKED, mkwrite_latency=1.0)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
with together():
    store(m, page=2, data=b"T", name="store")
    truncate("/f", PAGE, delay=0.5, name="truncate")
expect("store", "sigbus")
expect("truncate", "ok")
mount()
expect_df(reserved=0, allocated=0, free=16)
expect_attr("/f", "dirty_pages", 0)
