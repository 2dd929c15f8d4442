"""sim_mmu: an MMU simulator that models Linux's page_mkwrite() write notification.

The page cache (``sim_mmu.page``) is shared with the filesystem; the protocols a mappable
file implements are in ``sim_mmu.protocols``; ``Simulation``/``Process`` are the entry
points for scenarios; ``sim_mmu.fault`` holds the fault handler's decision table.
"""

from sim_mmu.errors import (
    BUS_ADRERR,
    SEGV_ACCERR,
    SEGV_MAPERR,
    SIGBUS,
    SIGKILL,
    SIGSEGV,
    ProcessExited,
    SigInfo,
    SimError,
    SimMmuError,
    SimSignal,
)
from sim_mmu.page import PAGE_SHIFT, PAGE_SIZE, AddressSpace, Page, pages_spanned
from sim_mmu.process import Process, Simulation
from sim_mmu.profile import PROFILES, GupForce, Profile, get_profile
from sim_mmu.protocols import (
    VM_FAULT_ERROR,
    AddressSpaceOperations,
    FaultFlag,
    MapFlags,
    MappedFile,
    MsFlags,
    Prot,
    VmFault,
    VmFaultInfo,
    VmOperations,
)
from sim_mmu.trace import Event, Statistics

__all__ = [
    "BUS_ADRERR",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "PROFILES",
    "SEGV_ACCERR",
    "SEGV_MAPERR",
    "SIGBUS",
    "SIGKILL",
    "SIGSEGV",
    "VM_FAULT_ERROR",
    "AddressSpace",
    "AddressSpaceOperations",
    "Event",
    "FaultFlag",
    "GupForce",
    "MapFlags",
    "MappedFile",
    "MsFlags",
    "Page",
    "Process",
    "ProcessExited",
    "Profile",
    "Prot",
    "SigInfo",
    "SimError",
    "SimMmuError",
    "SimSignal",
    "Simulation",
    "Statistics",
    "VmFault",
    "VmFaultInfo",
    "VmOperations",
    "get_profile",
    "pages_spanned",
]
