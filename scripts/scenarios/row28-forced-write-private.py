"""A forced write to a read-only MAP_PRIVATE mapping: a private copy, the file untouched.

KERNEL.md §5 and §6 row 28, told on the modern and the 2.6.18 kernel profiles (the
same outcome on both): how debuggers set breakpoints in text. No hook is called and the
file keeps its bytes.
"""

from fusefs.scenario import *

setup(policies=("reserve", "fuse"), profiles=("modern", "2.6.18"))
create("/f", pages=4)
debuggee = spawn("debuggee")
m = mmap(debuggee, "/f", prot="r", shared=False)
poke(m, page=0, data=b"z", name="poke")
load(m, page=0, name="process sees")
expect("poke", "ok")
expect_loaded("process sees", b"z")
mount()
expect_attr("/f", "mkwrite_calls", 0)
expect_data("/f", 0, b"\0")
