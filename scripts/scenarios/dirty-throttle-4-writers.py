"""Four writers dirty 750 pages each through shared mappings of a 1 MiB/s store: capped.

Throttling runs where the seed put it: in page_mkwrite, before the page can become
writable (DirtyConfig(placement="before")). The store's bandwidth is already measured.
32 MiB of simulated dirtyable memory: thresh and limit 1638 pages, background 819,
freerun 1228, setpoint 1433. Under ext4-like policies the four writers run free to 1228
dirty pages, then balance_dirty_pages paces them at the store's 256 pages/s together,
64 each, and dirty settles between the setpoint and the limit; a writer that would pass
the limit waits for room, so the peak (max_dirty_pages in --json) never passes
dirty_limit_pages. Under the fuse policy the device's own 1 % share (16 pages,
strictlimit) is the cap while the global count stays far below every global threshold.
`mkwritefs scenario run dirty-throttle-4-writers --plot FILE` draws each writer's rate
and pause by its name (FILE-POLICY.png).
"""

from fusefs.scenario import *
from fusefs.vm.throttle import DirtyConfig

setup(
    capacity=4096,
    policies=("reserve", "fuse"),
    dirty=DirtyConfig(
        memory_pages=8192,
        write_bandwidth=256.0,
        measured=True,
        placement="before",
        record_interval=0.1,
    ),
)
maps = []
for i in range(4):
    create(f"/f{i}", pages=750)
    maps.append(mmap(spawn(f"writer{i}"), f"/f{i}"))
with together():
    for i, m in enumerate(maps):
        stores(m, pages=750, data=b"%d" % i, name=f"dd{i}")
for i in range(4):
    expect(f"dd{i}", "ok")
mount()
expect_attr("/", "dirty_limit_pages", per(fuse=16, default=1638))
expect_attr("/", "dirty_placement", "before")
for i in range(4):
    expect_data(f"/f{i}", 749 * PAGE, b"%d" % i)
