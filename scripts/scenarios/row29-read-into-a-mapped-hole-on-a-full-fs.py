"""read(2) into a buffer mapped over a hole of a full filesystem: EFAULT, not a signal.

KERNEL.md §6 row 29. The kernel's copy faults in kernel mode; a refusing hook makes
read(2) fail with EFAULT (no SIGBUS). Without one the copy succeeds and the data is
lost at writeback (msync: ENOSPC).
"""

from fusefs.scenario import *

setup(capacity=2)
create("/f", pages=2)
fill()
reader = spawn("reader")
m = mmap(reader, "/f")
copy_to_user(m, page=0, data=b"r" * 10, name="read into buffer")
msync(m, name="msync")
expect("read into buffer", per({REFUSING: "EFAULT"}, default="ok"))
expect_sim("sigbus", 0)
expect("msync", per({REFUSING: "ok"}, default="ENOSPC"))
mount()
expect_data("/f", 0, b"\0" * 10)
expect_df(free=0)
