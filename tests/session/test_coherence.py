"""One page cache, seen both ways through a real mount (issue 4 item 4).

A simulated store is visible at once to read(2), to a real mmap and to a second read
after more stores (the kernel's cached pages are invalidated); a write(2) through the
mount is visible at once to a simulated process that has the page mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fusefs.vm.policy import Policy

from . import children

pytestmark = pytest.mark.mount
ZEROS = bytes(8)


@pytest.mark.parametrize("policy", [p.value for p in Policy])
def test_simulated_store_is_seen_by_read_and_mmap(
    in_child: Callable[..., Any], policy: str
) -> None:
    got = in_child(children.store_then_read, policy, False)
    assert got["before"] == ZEROS
    assert got["mapped_before"] == ZEROS
    assert got["read"] == b"SIMSTORE"
    assert got["mapped"] == b"SIMSTORE"
    assert got["read_again"] == b"SIMSTOREAGAIN"


@pytest.mark.parametrize("policy", ["legacy", "reserve", "shmem"])
def test_simulated_stores_are_seen_by_another_process_at_once(
    in_child: Callable[..., Any], policy: str
) -> None:
    got = in_child(children.store_then_cat, policy)
    assert got["before"] == bytes(16)
    assert got["first"] == b"SIMSTORE" + bytes(8)
    assert got["second"] == b"SIMSTORENO-FAULT"


@pytest.mark.parametrize("policy", ["legacy", "reserve", "fuse"])
def test_store_after_a_read_fault_is_seen_by_read(
    in_child: Callable[..., Any], policy: str
) -> None:
    got = in_child(children.store_then_read, policy, True)
    assert got["read"] == b"SIMSTORE"
    assert got["read_again"] == b"SIMSTOREAGAIN"


@pytest.mark.parametrize("policy", ["legacy", "reserve", "shmem"])
def test_write_through_the_mount_is_seen_by_a_mapping(
    in_child: Callable[..., Any], policy: str
) -> None:
    got = in_child(children.write_then_load, policy)
    assert got["loaded"] == ZEROS
    assert got["seen"] == b"WRITE(2)"
    assert got["seen_writable"] == b"minekernel"
    assert got["no_new_faults"], "the mapped pages should be the very pages write(2) changed"
