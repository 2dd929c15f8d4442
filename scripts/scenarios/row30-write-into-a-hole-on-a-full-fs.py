"""write(2) through the mount into a hole of a full filesystem: ENOSPC at once, every policy.

KERNEL.md §6 row 30. write(2) reserves synchronously, so it can say ENOSPC; only a store
through a mapping needs page_mkwrite for that. An overwrite of an allocated block
needs no space and succeeds.
"""

from fusefs.scenario import *

setup(capacity=2)
create("/f", pages=2)
fallocate("/f", PAGE, PAGE)
fill()
mount()
write("/f", 0, b"w", name="write(2) into hole")
write("/f", PAGE, b"o", name="write(2) over block")
expect("write(2) into hole", "ENOSPC")
expect("write(2) over block", "ok")
expect_data("/f", 0, b"\0")
expect_data("/f", PAGE, b"o")
expect_df(free=0)
