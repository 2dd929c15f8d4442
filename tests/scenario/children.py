"""What the scenario tests run in child processes (spawned: importable by reference)."""

from __future__ import annotations

from typing import Any

from fusefs.scenario.language import load_file
from fusefs.scenario.runner import play


def play_files(paths: list[str], mountpoint: str) -> dict[str, dict[str, Any]]:
    """Play every scenario of ``paths`` under each policy it declares, on each kernel
    profile it is told on, mounting on ``mountpoint`` each time:
    {name: {"POLICY on PROFILE": {"failed": [failed expectation, ...], ...}}}."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        scenario = load_file(path)
        out[scenario.name] = {}
        for policy, profile in [(p, k) for p in scenario.policies for k in scenario.profiles]:
            result = play(scenario, policy, profile=profile, mountpoint=mountpoint)
            out[scenario.name][f"{policy} on {profile}"] = {
                "failed": [f"{e.name}: {e.detail}" for e in result.expectations if not e.held],
                "checked": len(result.expectations),
                "mount_checks": sum(e.name.startswith("mount: ") for e in result.expectations),
            }
    return out
