"""FS-Cache: page_mkwrite waits until the backing cache has the page's old contents.

KERNEL.md §6 row 19 (the cache policy). The cache takes 1 s to copy a page; the store
waits for it, so the cache holds "before", never a torn mix, and the file "AFTER!".
"""

from fusefs.scenario import *

setup(policies="cache", cache_write_latency=1.0)
create("/f", pages=4)
write("/f", 0, b"before")
writer = spawn("writer")
m = mmap(writer, "/f")
store(m, page=0, data=b"AFTER!", name="store")
expect("store", "ok")
expect_took("store", at_least=1.0)
expect_cache(captures=1, first=b"before")
mount()
expect_data("/f", 0, b"AFTER!")
