"""The same hole punch on 2.6.18: the hook could only say yes or no, so a bogus SIGBUS.

KERNEL.md §6 row 11, kernels 2.6.18-2.6.29: NOPAGE did not exist, a racing hole punch
made page_mkwrite fail and the store died of SIGBUS (fixed by 56a76f8275c3). Nothing
is leaked either way.
"""

from fusefs.scenario import *

setup(policies="reserve", profile="2.6.18", mkwrite_latency=1.0)
create("/f", pages=4)
writer = spawn("writer")
m = mmap(writer, "/f")
load(m, page=0)
with together():
    store(m, page=0, data=b"P", name="store")
    fallocate("/f", 0, PAGE, punch=True, delay=0.5)
expect("store", "sigbus")
mount()
expect_df(reserved=0, free=16)
expect_data("/f", 0, b"\0")
