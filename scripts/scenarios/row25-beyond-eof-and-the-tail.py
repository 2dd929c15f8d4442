"""A page wholly beyond EOF gets SIGBUS; a store into the last page's tail is never data.

KERNEL.md §6 row 25. The tail store is allowed but zeroed at writeback; the size stays
100 bytes, and extending the file later shows zeros there.
"""

from fusefs.scenario import *

setup()
f = create("/f", size=100)
writer = spawn("writer")
m = mmap(writer, "/f", pages=2)
store(m, page=1, data=b"x", name="beyond EOF")
store(m, page=0, offset=200, data=b"tail", name="tail")
fsync(f)
truncate("/f", 300)
mount()
expect("beyond EOF", "sigbus")
expect("tail", "ok")
expect_data("/f", 200, b"\0" * 4)
