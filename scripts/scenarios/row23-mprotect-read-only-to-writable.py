"""mprotect from read-only to read-write keeps clean pages write-protected: the hook runs.

KERNEL.md §6 row 23.
"""

from fusefs.scenario import *

setup(policies=HOOKED)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f", prot="r")
load(m, page=0)
mprotect(m, "rw", name="mprotect")
store(m, page=0, data=b"w", name="store")
expect("mprotect", "ok")
expect("store", "ok")
mount()
expect_attr("/f", "mkwrite_calls", 1)
expect_data("/f", 0, b"w")
