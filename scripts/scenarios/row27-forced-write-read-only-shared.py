"""A forced write to a read-only shared mapping: EFAULT from 3.15, a private copy before.

KERNEL.md §5 and §6 row 27, told on each kernel profile: ptrace(PTRACE_POKEDATA) or a
write to /proc/PID/mem (get_user_pages with FOLL_WRITE|FOLL_FORCE) into a MAP_SHARED,
PROT_READ mapping of a file opened O_RDWR: VM_MAYWRITE without VM_WRITE.

- modern (3.15 on): the write fails with EFAULT; the process and the file see nothing.
- 2.6.18 (2.6.18 to 3.14): it writes a private copy (COW); no hook, the file untouched.
- legacy (before page_mkwrite): a private copy too; there is no hook to call.
- draft (Howells' unfixed draft): it calls page_mkwrite and lands in the file.
"""

from fusefs.scenario import *

setup(policies=("reserve", "fuse"), profiles=("modern", "2.6.18", "legacy", "draft"))
create("/f", pages=4)
debuggee = spawn("debuggee")
m = mmap(debuggee, "/f", prot="r")
load(m, page=0)  # the page is present, mapped read-only
poke(m, page=0, data=b"z", name="poke")
load(m, page=0, name="process sees")
expect("poke", per_profile(modern="EFAULT", default="ok"))
expect_loaded("process sees", per_profile(modern=b"\0", default=b"z"))
expect_sim("cow_copies", per_profile({("2.6.18", "legacy"): 1}, default=0))
mount()
expect_attr("/f", "mkwrite_calls", per_profile(draft=1, default=0))
expect_data("/f", 0, per_profile(draft=b"z", default=b"\0"))
