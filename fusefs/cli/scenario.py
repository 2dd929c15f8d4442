"""`mkwritefs scenario list|run`: the scenario library on the command line.

`list` prints one scenario a line, its name first, then its one-line story. `run` plays
one scenario (a name from the library, or a file) under one policy or all it declares,
each on a fresh filesystem mounted in a temporary directory (or `--mount DIR`), and
prints a table (`--policy all`), the expectations of one policy, or with `--json` one
object. Exit status: 0 every expectation held, 1 one failed, 2 bad scenario or arguments
(one line on stderr: file and line for a bad scenario). Progress goes to stderr.
`report` (``fusefs.scenario.report``) draws the HTML page; `--store DIR` is one option of `run` and
`report` alike, checked by :func:`store_paths` and played by ``runner.play(store=...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fusefs.cli.common import UsageError, command
from fusefs.scenario.language import ALL, Scenario, ScenarioError, find, load_file, scenario_files
from sim_mmu.profile import PROFILES


def _arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the scenarios, one a line: name, then story")
    run = sub.add_parser(
        "run",
        help="play a scenario under one policy or all",
        description="Play a scenario under each policy it declares (or the one given): "
        "simulated processes on virtual time, then the real mount for the checks. Prints "
        "a table with a column per policy and a row per expectation. Exit status 1 when "
        "an expectation failed, 2 for a bad scenario or bad arguments.",
    )
    run.add_argument(
        "scenario",
        metavar="NAME|FILE",
        help="a name from `mkwritefs scenario list`, or the path of a scenario file",
    )
    run.add_argument(
        "--policy",
        default="all",
        help=f"one of {', '.join(ALL)}, or all (default: all the scenario declares)",
    )
    run.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="kernel profile (default: the scenario's; the first of those it is told on)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--trace",
        metavar="FILE",
        help="write the events: Chrome trace JSON (Perfetto), or JSON lines "
        "when FILE ends in .jsonl",
    )
    run.add_argument("--plot", metavar="FILE",
                     help="draw the dirty-page time series as a PNG (a scenario with "
                     "setup(dirty=DirtyConfig(record_interval=...))); FILE-POLICY.png per "
                     "policy when several")  # fmt: skip
    run.add_argument("--mount", metavar="DIR", help="mount on DIR (default: a temporary one)")
    _add_store(run)
    run.add_argument("--keep", action="store_true",
                     help="leave the (last) mount up after the run, until Ctrl-C")  # fmt: skip

    _add_store(_report_parser(sub, list(PROFILES)))


def _add_store(parser: argparse.ArgumentParser) -> None:
    """`--store DIR`, one meaning for `run` and `report` (checked by :func:`store_paths`,
    played by ``runner.play(store=...)``)."""
    parser.add_argument("--store", metavar="DIR",
                        help="keep each policy's filesystem in a new store DIR/NAME-POLICY.db "
                        "(`mkwritefs mkfs`), and read the verdicts back from it after the "
                        "unmount: every expect_data again, and the bytes writers were told "
                        "were stored and are not there")  # fmt: skip


@command(
    "scenario",
    help="list or run ENOSPC/page_mkwrite scenarios, side by side per policy",
    description="Scenarios of scripts/scenarios: a story played by simulated processes "
    "on a filesystem that is also mounted, under each write-notification policy.",
    add_arguments=_arguments,
)
def _scenario(args: argparse.Namespace) -> int:
    try:
        if args.action == "report":
            return _run_report(args)
        return _list() if args.action == "list" else _run(args)
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _list() -> int:
    bad = 0
    scenarios = []
    for path in scenario_files():
        try:
            scenarios.append(load_file(path))
        except ScenarioError as exc:
            print(exc, file=sys.stderr)
            bad += 1
    width = max((len(s.name) for s in scenarios), default=0)
    for s in scenarios:
        print(f"{s.name:<{width}}  {s.story}")
    return 2 if bad else 0


def _load(args: argparse.Namespace) -> tuple[Scenario, list[str]]:
    try:
        scenario = load_file(find(args.scenario))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if args.policy == "all":
        return scenario, list(scenario.policies)
    if args.policy not in ALL:
        raise UsageError(f"unknown policy {args.policy!r} (known: {', '.join(ALL)}, all)")
    if args.policy not in scenario.policies:
        raise UsageError(f"scenario {scenario.name} is told under "
                         f"{', '.join(scenario.policies)}, not {args.policy}")  # fmt: skip
    return scenario, [args.policy]


def _run(args: argparse.Namespace) -> int:
    from fusefs.fuse.mount import MountError
    from fusefs.scenario import runner
    from fusefs.scenario import table as scenario_report

    scenario, policies = _load(args)
    if args.mount is not None and not os.path.isdir(args.mount):
        raise UsageError(f"mount point {args.mount} is not an existing directory")
    for out in (args.trace, args.plot):
        if out is not None:
            _check_writable(out)
    stores = store_paths(args.store, scenario.name, policies)
    if args.profile is None and len(scenario.profiles) > 1:
        print(f"{scenario.name} is told on the kernel profiles {', '.join(scenario.profiles)}: "
              f"playing {scenario.profile} (--profile P for another)", file=sys.stderr)  # fmt: skip
    results = []
    for n, policy in enumerate(policies, start=1):
        print(f"[{n}/{len(policies)}] {scenario.name}: policy {policy}...", file=sys.stderr,
              flush=True)  # fmt: skip
        keep = _keep if args.keep and n == len(policies) else None
        try:
            result = runner.play(scenario, policy, profile=args.profile, mountpoint=args.mount,
                                 keep=keep, store=stores.get(policy))  # fmt: skip
        except MountError as exc:
            raise UsageError(str(exc)) from None
        held = sum(e.held for e in result.expectations)
        print(f"      {held}/{len(result.expectations)} expectations held", file=sys.stderr,
              flush=True)  # fmt: skip
        results.append(result)
    if args.json:
        print(json.dumps(scenario_report.as_json(scenario.name, results)))
    else:
        print(f"{scenario.name}: {scenario.story}")
        if len(results) > 1:
            print(scenario_report.table(results))
            for line in scenario_report.failures(results):
                print(f"FAILED {line}")
        else:
            print(scenario_report.details(results[0]))
    if args.plot is not None:
        _plot(args.plot, scenario.name, results)
    if args.trace is not None:
        with open(args.trace, "w") as fp:
            count = scenario_report.write_trace(fp, scenario.name, results,
                                                jsonl=args.trace.endswith(".jsonl"))  # fmt: skip
        print(f"trace: {count} events in {args.trace}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def _plot(path: str, name: str, results: list[Any]) -> None:
    """One PNG per policy of the dirty model's series (fusefs.vm.throttle, DirtyRecorder),
    and its numbers as CSV beside it (same name, .csv)."""
    series = [(r.policy, r.dirty_series) for r in results if r.dirty_series is not None]
    if not series:
        raise UsageError(f"scenario {name} records no dirty-page series (no --plot)")
    for policy, recorder in series:
        out = path if len(results) == 1 else f"{os.path.splitext(path)[0]}-{policy}.png"
        if not recorder.plot(out, title=f"{name}: policy {policy}"):
            raise UsageError("--plot needs matplotlib")
        table = f"{os.path.splitext(out)[0]}.csv"
        recorder.to_csv(table)
        print(f"plot: {out} (series: {table})", file=sys.stderr)


def store_paths(folder: str | None, name: str, policies: list[str]) -> dict[str, str]:
    """DIR/NAME-POLICY.db per policy; UsageError unless DIR is a writable directory on
    no mkwritefs mount and none of those stores exists yet (`run` and `report` both)."""
    if folder is None:
        return {}
    from fusefs.fs.store import StoreError, check_location

    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"--store {folder} is not a writable directory")
    paths = {p: os.path.join(folder, f"{name}-{p}.db") for p in policies}
    for path in paths.values():
        try:
            check_location(path)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
        if os.path.lexists(path):
            raise UsageError(f"{path} already exists: --store makes new stores only")
    return paths


def _check_writable(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write the trace to {path}: {directory} is not writable")


async def _keep(m: Any) -> None:
    print(f"mounted on {m.mountpoint}; look around (ls, df, getfattr -d -m user.mkwritefs); "
          "Ctrl-C to unmount", file=sys.stderr, flush=True)  # fmt: skip
    await m.wait_ended()


def _run_report(args: Any) -> int:
    """`mkwritefs scenario report NAME --html FILE [--page N] [--profile P] [--store DIR]`."""
    from fusefs.fuse.mount import MountError
    from fusefs.scenario import report

    try:
        scenario = load_file(find(args.scenario))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    directory = os.path.dirname(os.path.abspath(args.html))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write the report to {args.html}: {directory} is not writable")
    if args.page is not None and args.page < 0:
        raise UsageError(f"--page must be a page number (0 or more), not {args.page}")
    stores = store_paths(args.store, scenario.name, list(scenario.policies))
    try:
        text, recordings = report.build(
            scenario,
            page=args.page,
            profile=args.profile,
            progress=lambda t: print(t, file=sys.stderr, flush=True),
            stores=stores,
        )
    except MountError as exc:
        raise UsageError(str(exc)) from None
    with open(args.html, "w") as fp:
        fp.write(text)
    print(f"report: {args.html} ({len(recordings)} policies)", file=sys.stderr)
    return 0 if all(r.result.ok for r in recordings) else 1


def _report_parser(sub: Any, profiles: list[str]) -> Any:
    """The `report` action of `mkwritefs scenario` (its parser: `--store` is added by
    fusefs.cli.scenario, with the same meaning as for `run`)."""
    p = sub.add_parser("report", help="play a scenario under every policy it declares and "
                       "write one self-contained HTML page")  # fmt: skip
    p.add_argument("scenario", metavar="NAME|FILE")
    p.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    p.add_argument("--page", type=int, metavar="N",
                   help="the page whose PTE life is shown (default: the first that got a "
                   "page_mkwrite call)")  # fmt: skip
    p.add_argument("--profile", choices=profiles, help="kernel profile (default: the scenario's)")
    return p
