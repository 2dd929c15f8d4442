"""Every scenario of scripts/scenarios holds under every policy it is told under, and
checks its outcome through the real mount too."""

from __future__ import annotations

from typing import Any

import pytest

from fusefs.scenario import scenario_files

NAMES = [p.stem for p in scenario_files()]


def test_the_library_covers_kernel_md_section_6() -> None:
    assert len(NAMES) >= 24
    rows = {name.split("-")[0] for name in NAMES}
    for row in ("row01", "row02", "row03", "row04", "row10", "row11", "row16", "row19",
                "row27", "row28", "row29", "row30", "row33"):  # fmt: skip
        assert row in rows
    for profile in ("modern", "2.6.18", "draft", "legacy"):
        assert f"row27-forced-write-read-only-shared-{profile}" in NAMES


@pytest.mark.mount
@pytest.mark.parametrize("name", NAMES)
def test_scenario_holds(name: str, library_results: dict[str, Any]) -> None:
    per_policy = library_results[name]
    assert per_policy, "no policy played"
    for policy, outcome in per_policy.items():
        assert outcome["failed"] == [], f"{name} under {policy}"
        assert outcome["mount_checks"] >= 3, f"{name} under {policy}: checked through the mount"
