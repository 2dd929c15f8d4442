"""An I/O error at writeback is reported once to each open file, never to a later one.

KERNEL.md §6 row 17 (errseq_t, 4.13+): msync of the mapping's file reports EIO, its next
fsync nothing; the other open file sees EIO once; a file opened after the error sees
nothing. The page stays cached: no acknowledged byte is lost.
"""

from fusefs.scenario import *

setup(policies="reserve")
f = create("/f", pages=4)
other = reopen(f)
writer = spawn("writer")
m = mmap(writer, f)
store(m, page=0, data=b"e")
inject_error(f, "EIO")
msync(m, name="msync")
fsync(f, name="fsync again")
fsync(other, name="other fd")
fsync(other, name="other fd again")
late = reopen(f)
fsync(late, name="fd opened later")
mount()
expect("msync", "EIO")
expect("fsync again", "ok")
expect("other fd", "EIO")
expect("other fd again", "ok")
expect("fd opened later", "ok")
expect_attr("/f", "writeback_errors", 1)
expect_attr("/f", "lost_bytes", 0)
expect_data("/f", 0, b"e")
