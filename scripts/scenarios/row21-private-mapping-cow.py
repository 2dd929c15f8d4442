"""MAP_PRIVATE stores copy the page: no hook, no reservation, the file never changes.

KERNEL.md §6 row 21, also after fork: parent and child each keep their own copy.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f", shared=False)
store(m, page=0, data=b"p")
child = fork(writer, "child")
store(m, page=0, data=b"c", proc=child)
load(m, page=0, name="parent sees")
load(m, page=0, proc=child, name="child sees")
expect_loaded("parent sees", b"p")
expect_loaded("child sees", b"c")
mount()
expect_attr("/f", "mkwrite_calls", 0)
expect_df(reserved=0, allocated=per(shmem=1, default=0))  # tmpfs: the read fault took a page
expect_data("/f", 0, b"\0")
