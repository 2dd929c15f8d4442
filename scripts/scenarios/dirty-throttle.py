"""One writer dirties 2000 pages through a shared mapping of a 1 MiB/s store: throttled.

32 MiB of simulated dirtyable memory: dirty_ratio 20 % ⇒ thresh 1638 pages, background
819, freerun 1228. Under ext4-like policies (an ordinary bdi) the writer runs free up to
1228 dirty pages, then balance_dirty_pages paces it at the store's 256 pages/s, and dirty
never passes the limit. Under the fuse policy the bdi is FUSE's: max_ratio 1 % and
strictlimit, so the device's own share (16 pages) throttles it from the start while the
global count stays far below every global threshold (KERNEL.md §4).
"""
from fusefs.scenario import *
from fusefs.throttle import DirtyConfig

setup(capacity=4096, policies=("reserve", "fuse"),
      dirty=DirtyConfig(memory_pages=8192, write_bandwidth=256.0))
create("/f", pages=2000)
writer = spawn("writer")
m = mmap(writer, "/f")
for page in range(2000):
    store(m, page=page, data=b"d", name="last store" if page == 1999 else None)
expect("last store", "ok")
mount()
expect_attr("/", "dirty_limit_pages", per(fuse=16, default=1638))
expect_attr("/", "strictlimit", per(fuse=1, default=0))
expect_data("/f", 1999 * PAGE, b"d")
