"""From 3.15 on, a forced write to a read-only shared mapping fails with EFAULT.

KERNEL.md §5 and §6 row 27 on the modern kernel profile: ptrace(PTRACE_POKEDATA) or a
write to /proc/PID/mem (get_user_pages with FOLL_WRITE|FOLL_FORCE) into a MAP_SHARED,
PROT_READ mapping of a file opened O_RDWR: VM_MAYWRITE without VM_WRITE.
"""
from fusefs.scenario import *

setup(policies=("reserve", "fuse"), profile="modern")
create("/f", pages=4)
debuggee = spawn("debuggee")
m = mmap(debuggee, "/f", prot="r")
load(m, page=0)  # the page is present, mapped read-only
poke(m, page=0, data=b"z", name="poke")
load(m, page=0, name="process sees")
expect("poke", "EFAULT")
expect_loaded("process sees", b"\0")
expect_sim("cow_copies", 0)
mount()
expect_attr("/f", "mkwrite_calls", 0)
expect_data("/f", 0, b"\0")
