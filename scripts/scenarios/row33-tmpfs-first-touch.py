"""tmpfs over its size limit: SIGBUS at the first touch of a hole, even a read.

KERNEL.md §6 row 33 (the shmem policy): no page_mkwrite; shmem_fault allocates the
page, and charges its block, at any first fault.
"""

from fusefs.scenario import *

setup(capacity=2, policies="shmem")
create("/f", pages=2)
fill()
reader = spawn("reader")
m = mmap(reader, "/f")
load(m, page=0, name="read")
expect("read", "sigbus")
mount()
expect_attr("/f", "sigbus", 1)
expect_df(free=0)
