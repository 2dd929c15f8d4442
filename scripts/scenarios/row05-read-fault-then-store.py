"""A read fault maps the page read-only; the first store then calls page_mkwrite once.

KERNEL.md §6 row 5. shmem (tmpfs) has no write notification: its read fault already
maps the page writable.
"""

from fusefs.scenario import *

setup()
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
load(m, page=0, name="read")
expect_loaded("read", b"\0")
expect_pte(m, 0, writable=per(shmem=True, default=False), when="after the read")
store(m, page=0, data=b"x", name="store")
expect("store", "ok")
expect_pte(m, 0, writable=True, dirty=True, when="after the store")
mount()
expect_attr("/f", "mkwrite_calls", per({HOOKED: 1}, default=0))
expect_data("/f", 0, b"x")
