"""A full filesystem, an overwrite of an allocated block: succeeds (btrfs-like COW: SIGBUS).

KERNEL.md §6 row 3. The page already has its block, so no new space is needed (ext4,
xfs); only reserve-cow, which writes every overwrite to a new block, must refuse it.
"""

from fusefs.scenario import *

setup(capacity=1)
create("/f", pages=1)
fallocate("/f", 0, PAGE)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"C", name="overwrite")
msync(m, name="msync")
mount()
expect("overwrite", per(reserve_cow="sigbus", default="ok"))
expect("msync", "ok")
expect_data("/f", 0, per(reserve_cow=b"\0", default=b"C"))
expect_df(free=0, allocated=1)
