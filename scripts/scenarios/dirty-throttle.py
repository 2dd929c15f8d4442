"""One writer dirties 3000 pages through a shared mapping of a 1 MiB/s store: throttled.

The store's bandwidth is already measured (the kernel's first guess, 100 MB/s, takes
~20 s to unlearn). 32 MiB of simulated dirtyable memory: dirty_ratio 20 % => thresh 1638
pages, background 819, freerun 1228, setpoint 1433. Under ext4-like policies (an
ordinary bdi) the writer runs free up to 1228 dirty pages, then balance_dirty_pages
paces it at the store's 256 pages/s and dirty settles near the setpoint, under the
limit. Under the fuse policy the bdi is FUSE's: max_ratio 1 % and strictlimit, so the
device's own share (16 pages) throttles it from the start while the global count stays
far below every global threshold (KERNEL.md section 4).
`mkwritefs scenario run dirty-throttle --plot FILE` draws the series (FILE-POLICY.png).
"""

from fusefs.scenario import *
from fusefs.vm.throttle import DirtyConfig

setup(
    capacity=4096,
    policies=("reserve", "fuse"),
    dirty=DirtyConfig(memory_pages=8192, write_bandwidth=256.0, measured=True, record_interval=0.1),
)
create("/f", pages=3000)
writer = spawn("writer")
m = mmap(writer, "/f")
for page in range(3000):
    store(m, page=page, data=b"d", name="last store" if page == 2999 else None)
expect("last store", "ok")
mount()
expect_attr("/", "dirty_limit_pages", per(fuse=16, default=1638))
expect_attr("/", "strictlimit", per(fuse=1, default=0))
expect_data("/f", 2999 * PAGE, b"d")
