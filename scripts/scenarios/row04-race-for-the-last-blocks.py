"""Four processes race for the last two blocks: two stores succeed, two get SIGBUS.

KERNEL.md §6 row 4. page_mkwrite sleeps a little (mkwrite_latency) so the four hooks
overlap. Policies that reserve at the store give exactly one store per free block and
never overcommit; the others acknowledge all four and lose two pages at writeback.
"""

from fusefs.scenario import *

setup(capacity=8, mkwrite_latency=0.1)
create("/f", pages=4)
fill(6)
maps = [mmap(spawn(f"writer{i}"), "/f") for i in range(4)]
with together():
    for i, m in enumerate(maps):
        store(m, page=i, data=b"race")
for m in maps:
    msync(m)
mount()
expect_sim("sigbus", per({REFUSING: 2}, default=0))
expect_attr("/", "lost_bytes", per({REFUSING: 0}, default=2 * PAGE))
expect_df(free=0, reserved=0, allocated=8)
