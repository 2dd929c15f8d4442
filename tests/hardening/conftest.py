"""Shared by the hardening tests: hypothesis budgets that grow under `--long`, and a
module-wide mount whose server must never have logged a bug.

A handler that hits a bug answers EIO and logs "BUG: ..." (fusefs.fuse.ops._boundary);
a fuzzing test could take that EIO for an expected errno, so every server these tests
start is checked for such a line before it is stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.mount.conftest import Server, start_server, stop_server

_long = False
LONG_FACTOR = 10


def pytest_configure(config: pytest.Config) -> None:
    global _long
    _long = bool(config.getoption("--long", default=False))


def fuzz(examples: int) -> settings:
    """`examples` in the normal run, LONG_FACTOR times as many under --long."""
    return settings(
        max_examples=examples * (LONG_FACTOR if _long else 1),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def check_no_bug_logged(server: Server) -> None:
    log = server.log()
    assert "BUG" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def serve_module(tmp_path_factory: pytest.TempPathFactory, name: str,
                 size: str = "1M") -> Iterator[Server]:  # fmt: skip
    """For a module-scoped fixture: a mount of `size`, stopped and checked afterwards."""
    mountpoint = tmp_path_factory.mktemp(name) / "mnt"
    mountpoint.mkdir()
    server = start_server(str(mountpoint), size=size)
    try:
        yield server
        check_no_bug_logged(server)
    finally:
        stop_server(server)
