"""A shared writable mapping of a file opened read-only is refused: EACCES, mmap and mprotect.

KERNEL.md §6 row 24.
"""

from fusefs.scenario import *

setup(policies=("legacy", "reserve"))
f = create("/f", pages=4)
ro = reopen(f, read_only=True)
writer = spawn("writer")
mmap(writer, ro, name="mmap shared rw")
m = mmap(writer, ro, prot="r", name="mmap shared r")
mprotect(m, "rw", name="mprotect rw")
expect("mmap shared rw", "EACCES")
expect("mmap shared r", "ok")
expect("mprotect rw", "EACCES")
mount()
expect_data("/f", 0, b"\0")
