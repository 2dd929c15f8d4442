"""Another user on the mount: what the mode bits and the settings' owner allow, and no more.

`mkwritefs mount` as root mounts with `default_permissions` (the kernel checks the mode
bits for the filesystem) and `allow_other` (other users may use the mount at all). Root
makes a few files on a mount in a directory everyone may enter; then a plain process of
uid 65534 (`setpriv --reuid --regid --clear-groups`, running the system's python3, which
that user can execute) tries what users try. It must not read or write a 0600 file, list
a 0700 directory, remove a file from root's directory or from a sticky one, chmod or
chown root's files, or change a setting (EACCES while it may not write the root
directory, the filesystem's own EPERM once it may); it can read what is world-readable,
the figures included, and work in a directory open to it. Afterwards every file, setting
and statfs figure is as before.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.mount.conftest import Server, start_server, stop_server
from tests.mount.support import wait_until

from .conftest import check_no_bug_logged

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                       reason="needs root and setpriv to act as another user"),
]  # fmt: skip

NOBODY = 65534
SETTINGS = ("policy", "capacity_blocks", "writeback_interval", "dirty_expire",
            "writeback_latency", "inject_writeback_error")  # fmt: skip

# Run as uid 65534: each check is (name, what to call) and reports the errno (0: allowed)
# and for reads what was read. Plain system python3: no project code runs as that user.
NOBODY_SCRIPT = r"""
import json, os, sys
mnt = sys.argv[1]
p = lambda *a: os.path.join(mnt, *a)
def read(path):
    with open(path, "rb") as f:
        return f.read().decode()
def create(path):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
checks = {
    "read secret": lambda: read(p("secret")),
    "write secret": lambda: os.open(p("secret"), os.O_WRONLY),
    "read public": lambda: read(p("public")),
    "write public": lambda: os.open(p("public"), os.O_WRONLY),
    "truncate public": lambda: os.truncate(p("public"), 0),
    "read group-only": lambda: read(p("group-only")),
    "list private": lambda: os.listdir(p("private")),
    "stat in private": lambda: os.stat(p("private", "inner")),
    "create in root": lambda: create(p("mine")),
    "mkdir in root": lambda: os.mkdir(p("mydir")),
    "unlink public": lambda: os.unlink(p("public")),
    "rename public": lambda: os.rename(p("public"), p("sticky", "taken")),
    "chmod public": lambda: os.chmod(p("public"), 0o666),
    "chown public": lambda: os.chown(p("public"), 65534, 65534),
    "set times of public": lambda: os.utime(p("public"), (0, 0)),
    "setxattr on public": lambda: os.setxattr(p("public"), "user.mine", b"x"),
    "figure of secret": lambda: os.getxattr(p("secret"), "user.mkwritefs.allocated_blocks"),
    "figure of public": lambda: os.getxattr(p("public"), "user.mkwritefs.dirty_pages").decode(),
    "figure of root": lambda: os.getxattr(mnt, "user.mkwritefs.free_blocks").decode(),
    "set policy": lambda: os.setxattr(mnt, "user.mkwritefs.policy", b"legacy"),
    "set capacity": lambda: os.setxattr(mnt, "user.mkwritefs.capacity_blocks", b"1"),
    "inject a fault": lambda: os.setxattr(mnt, "user.mkwritefs.inject_writeback_error", b"EIO"),
    "remove policy": lambda: os.removexattr(mnt, "user.mkwritefs.policy"),
    "unlink in sticky": lambda: os.unlink(p("sticky", "roots")),
    "rename in sticky": lambda: os.rename(p("sticky", "roots"), p("sticky", "stolen")),
    "own file in sticky": lambda: (create(p("sticky", "mine")), read(p("sticky", "mine")),
                                   os.unlink(p("sticky", "mine")))[1],
}
out = {}
for name, fn in checks.items():
    try:
        value = fn()
        out[name] = [0, value if isinstance(value, str) else None]
    except OSError as exc:
        out[name] = [exc.errno, None]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A mount in a directory everyone may enter (pytest's temporary ones are 0700)."""
    top = tempfile.mkdtemp(prefix="mkwritefs-perm-")
    os.chmod(top, 0o755)
    mountpoint = os.path.join(top, "mnt")
    os.mkdir(mountpoint)
    server = start_server(mountpoint, size="1M")
    try:
        yield server
    finally:
        stop_server(server)
        os.rmdir(mountpoint)
        os.rmdir(top)


def populate(mnt: str) -> None:
    def make(path: str, data: bytes, mode: int) -> None:
        with open(os.path.join(mnt, path), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(mnt, path), mode)

    make("secret", b"top secret", 0o600)
    make("public", b"for everyone", 0o644)
    make("group-only", b"staff only", 0o640)
    os.mkdir(os.path.join(mnt, "private"), 0o700)
    make("private/inner", b"hidden", 0o644)
    os.mkdir(os.path.join(mnt, "sticky"))
    os.chmod(os.path.join(mnt, "sticky"), 0o1777)
    make("sticky/roots", b"root's, in a sticky directory", 0o666)


def as_nobody(mnt: str) -> dict[str, tuple[int, str | None]]:
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "/usr/bin/python3", "-I", "-c", NOBODY_SCRIPT, mnt],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {k: (v[0], v[1]) for k, v in json.loads(result.stdout).items()}


def everything(mnt: str) -> dict[str, object]:
    """What root sees: every file's bytes and mode, the settings, statfs."""
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(mnt):
        for name in sorted(dirnames):  # (their mtime moves as nobody works in /sticky)
            st = os.lstat(os.path.join(dirpath, name))
            seen[os.path.join(dirpath, name)] = (st.st_mode, st.st_uid)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            with open(path, "rb") as f:
                seen[path] = (st.st_mode, st.st_uid, st.st_mtime_ns, f.read())
    for key in SETTINGS:
        seen[key] = os.getxattr(mnt, "user.mkwritefs." + key)
    vfs = os.statvfs(mnt)
    seen["statfs"] = (vfs.f_blocks, vfs.f_bfree, vfs.f_files, vfs.f_ffree)
    return seen


def test_another_user_gets_what_the_modes_allow(server: Server) -> None:
    mnt = server.mountpoint
    populate(mnt)
    before = everything(mnt)
    seen = as_nobody(mnt)
    denied = {name for name, (err, _) in seen.items() if err}
    assert seen["read public"] == (0, "for everyone")
    assert seen["figure of root"][0] == 0
    assert seen["figure of public"][0] == 0
    assert seen["own file in sticky"] == (0, "")
    assert {name: seen[name][0] for name in denied} == {
        "read secret": errno.EACCES,
        "write secret": errno.EACCES,
        "write public": errno.EACCES,
        "truncate public": errno.EACCES,
        "read group-only": errno.EACCES,
        "list private": errno.EACCES,
        "stat in private": errno.EACCES,
        "create in root": errno.EACCES,
        "mkdir in root": errno.EACCES,
        "unlink public": errno.EACCES,
        "rename public": errno.EACCES,
        "chmod public": errno.EPERM,
        "chown public": errno.EPERM,
        "set times of public": errno.EPERM,
        "setxattr on public": errno.EACCES,
        "figure of secret": errno.EACCES,
        # user.* attributes of a directory need write permission on it: the kernel refuses
        # before the filesystem is asked.
        "set policy": errno.EACCES,
        "set capacity": errno.EACCES,
        "inject a fault": errno.EACCES,
        "remove policy": errno.EACCES,
        "unlink in sticky": errno.EPERM,
        "rename in sticky": errno.EPERM,
    }
    # Nothing changed; nobody's own file in the sticky directory is gone once forgotten.
    wait_until(lambda: everything(mnt) == before, "the mount as it was")


def test_settings_stay_the_owners_when_others_may_write_the_root(server: Server) -> None:
    """With the root directory 0777 the kernel lets the request through: the filesystem
    itself refuses (EPERM), for every setting, and a user's own files are theirs."""
    mnt = server.mountpoint
    if not os.path.exists(os.path.join(mnt, "secret")):  # the test before left it as it was
        populate(mnt)
    os.chmod(mnt, 0o777)
    before = everything(mnt)
    seen = as_nobody(mnt)
    for name in ("set policy", "set capacity", "inject a fault", "remove policy"):
        assert seen[name][0] == errno.EPERM, (name, seen[name])
    assert seen["read secret"][0] == errno.EACCES
    assert seen["create in root"] == (0, None)
    assert seen["mkdir in root"] == (0, None)
    assert os.stat(os.path.join(mnt, "mine")).st_uid == NOBODY
    assert os.stat(os.path.join(mnt, "mydir")).st_uid == NOBODY
    for key in SETTINGS:
        assert os.getxattr(mnt, "user.mkwritefs." + key) == before[key], key
    assert seen["unlink public"] == (0, None)  # a 0777 directory: anyone may remove names
    assert not os.path.exists(os.path.join(mnt, "public"))
    check_no_bug_logged(server)
