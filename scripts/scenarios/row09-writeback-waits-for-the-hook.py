"""Writeback cannot clean a page while page_mkwrite holds its lock (cache policy).

KERNEL.md §6 row 9. The cache hook sleeps 1 s copying the page under the page lock;
the flusher, started at 0.5 s, waits for the lock, then writes the stored byte and
write-protects the PTE again. Nothing is cleaned under a fresh writable PTE.
"""

from fusefs.scenario import *

setup(policies="cache", cache_write_latency=1.0)
create("/f", pages=4)
write("/f", 0, b"w")
writer = spawn("writer")
m = mmap(writer, "/f")
with together():
    store(m, page=0, data=b"9", name="store")
    writeback(delay=0.5, name="writeback")
expect("store", "ok")
expect_took("writeback", at_least=0.5)
expect_pte(m, 0, writable=False)
mount()
expect_attr("/f", "dirty_pages", 0)
expect_data("/f", 0, b"9")
