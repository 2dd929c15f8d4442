"""Two threads store to the same read-only page at once: both call the hook, one block.

KERNEL.md §6 row 12. The loser of the race sees the PTE changed and retries; the
reservation is counted once.
"""

from fusefs.scenario import *

setup(policies=HOOKED, mkwrite_latency=1.0)
create("/f", pages=4)
writer = spawn("writer")
other = thread(writer, "writer-thread")
m = mmap(writer, "/f")
load(m, page=0)
with together():
    store(m, page=0, data=b"a", name="thread 1")
    store(m, page=0, data=b"b", proc=other, name="thread 2")
expect("thread 1", "ok")
expect("thread 2", "ok")
mount()
expect_attr("/f", "mkwrite_calls", 2)
expect_df(reserved=per(reserve=1, reserve_cow=1, default=0))
