"""After fork the child's first store into the shared mapping calls the hook in the child.

KERNEL.md §6 row 22. The child refaults, page_mkwrite runs again, the reservation is
not duplicated, and the parent sees the child's store (one shared page).
"""

from fusefs.scenario import *

setup(policies=HOOKED)
create("/f", pages=4)
parent = spawn("parent")
m = mmap(parent, "/f")
store(m, page=0, data=b"1")
child = fork(parent, "child")
store(m, page=0, data=b"2", proc=child, name="child store")
load(m, page=0, name="parent sees")
expect("child store", "ok")
expect_loaded("parent sees", b"2")
mount()
expect_attr("/f", "mkwrite_calls", 2)
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0))
expect_data("/f", 0, b"2")
