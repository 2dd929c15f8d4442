"""The `mkwritefs` command: its parser, built from the subcommands each module of this
package registers (`fusefs.cli.common.command`), and the entry point."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from fusefs.cli.common import COMMANDS, UsageError

# The modules that register subcommands with @command when imported, one per family.
COMMAND_MODULES: tuple[str, ...] = ("fusefs.cli.mount", "fusefs.cli.scenario", "fusefs.cli.store")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mkwritefs",
        description="A size-limited in-memory FUSE filesystem that makes page_mkwrite() "
        "and ENOSPC visible.",
    )
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


_HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def _reexec_with_huge_pages() -> None:
    """Run the server with glibc's malloc asking for transparent huge pages.

    Every page of file data is a fresh 4 KiB heap allocation, and on these machines the
    kernel's first-touch fault of each costs more than copying the data into it: with
    the heap in 2 MiB pages, sequential write(2) through the mount measured about 20 %
    faster (scripts/bench_fs.py, same run). The tunable is read only at process start,
    hence the exec (same pid, same arguments). Elsewhere than glibc 2.35+ it is ignored.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{_HUGE_PAGES_TUNABLE}" if tunables else _HUGE_PAGES_TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "fusefs", *sys.argv[1:]], env)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and args.command == "mount":
        _reexec_with_huge_pages()
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"mkwritefs {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mkwritefs stat DIR | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
