"""One page cache: a store is seen at once by read(2) on the mount, a write(2) by a load.

KERNEL.md §6 row 31. The simulated process and the mount share the filesystem's pages;
the mount's kernel cache is told of the store before the read.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"stored")
mount()
expect_data("/f", 0, b"stored")
write("/f", PAGE, b"written", name="write(2)")
load(m, page=1, length=7, name="load")
expect("write(2)", "ok")
expect_loaded("load", b"written")
