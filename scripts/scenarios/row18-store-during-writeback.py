"""A store into a page under writeback: FUSE waits for the I/O (stable pages), reserve not.

KERNEL.md §6 row 18. Writeback takes 1 s; the store comes at 0.5 s. Under fuse the hook
waits until the write ends, so the data written is the pre-store snapshot; under reserve
the store goes ahead at once. Either way the page is dirty again afterwards.
"""

from fusefs.scenario import *

setup(policies=("fuse", "reserve"), writeback_latency=1.0)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"old")
with together():
    writeback(name="writeback")
    store(m, page=0, data=b"new", delay=0.5, name="store new")
expect("store new", "ok")
expect_took(
    "store new",
    at_least=per(fuse=0.5, default=0.0),
    less_than=per(reserve=0.5, default=float("inf")),
)
mount()
expect_attr("/f", "dirty_pages", 1)
expect_data("/f", 0, b"new")
