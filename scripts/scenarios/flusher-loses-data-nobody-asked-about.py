"""Nobody calls msync: 36 s later the flusher writes back, and without a block the data is gone.

The kernel's flusher writes back pages dirty for dirty_expire (30 s). On a filesystem
with one free block, two stores into holes: refusing policies SIGBUS the second store
at once. The others acknowledge both; the flusher finds one block for two pages and
drops one. No system call ever reports it to the program (it never asked).
"""

from fusefs.scenario import *

setup(capacity=4)
create("/f", pages=2)
fill(3)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"first", name="store 0")
store(m, page=1, data=b"second", name="store 1")
expect("store 1", per({REFUSING: "sigbus"}, default="ok"))
sleep(36)
expect_attr("/f", "dirty_pages", per(shmem=1, default=0), when="36 s later")
mount()
expect_attr("/f", "lost_bytes", per({REFUSING: 0}, default=PAGE))
expect_data("/f", 0, b"first")
expect_df(free=0, reserved=0)
