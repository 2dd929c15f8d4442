"""fusefs.fuse.mount.serving: mount in this process, check from a thread, unmount cleanly -
also when the body raises or is cancelled with a system call blocked on the mount."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from . import children

pytestmark = pytest.mark.mount


def test_serving_mounts_and_checks_from_a_thread(in_child: Callable[..., Any]) -> None:
    got = in_child(children.serve_and_check)
    assert got["inside"], "the directory was not a mount point inside the block"
    assert (got["blocks"], got["bsize"]) == (256, 4096)
    assert got["data"] == b"written through the mount"
    assert got["fs_sees"] == b"written through the mount"  # the same filesystem object
    assert got["owner"] == 0
    assert not got["after"]


def test_body_raising_unmounts_and_allows_another_mount(in_child: Callable[..., Any]) -> None:
    got = in_child(children.body_raises)
    assert got["raised"]
    assert not got["after"]
    # A file left open on the mount is cut off (the kernel answers, nothing hangs).
    assert got["stale"] in ("ENOTCONN", "ECONNABORTED", "EIO")
    assert got["again"] == []  # a new, empty filesystem mounted on the same directory
    assert not got["finally"]


def test_cancel_with_a_thread_blocked_on_the_mount(in_child: Callable[..., Any]) -> None:
    got = in_child(children.cancelled_while_a_thread_waits)
    assert got["cancelled"]
    assert not got["after"]


def test_mount_errors_are_mount_error_and_leave_nothing(in_child: Callable[..., Any]) -> None:
    got = in_child(children.mount_errors)
    assert len(got["messages"]) == 2
    assert "cannot mount" in got["messages"][0]
    assert "already a mount point" in got["messages"][1]
    assert not got["after"]
