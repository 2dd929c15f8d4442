"""Every scenario of scripts/scenarios holds under every policy it is told under, on every
kernel profile it is told on, and checks its outcome through the real mount too."""

from __future__ import annotations

from typing import Any

import pytest

from fusefs.scenario.language import find, load_file, scenario_files

NAMES = [p.stem for p in scenario_files()]


def test_the_library_covers_kernel_md_section_6() -> None:
    assert len(NAMES) >= 24
    rows = {name.split("-")[0] for name in NAMES}
    for row in ("row01", "row02", "row03", "row04", "row10", "row11", "row16", "row19",
                "row27", "row28", "row29", "row30", "row33"):  # fmt: skip
        assert row in rows
    # Rows whose outcome depends on the kernel's version: one story each, on several profiles.
    row27 = load_file(find("row27-forced-write-read-only-shared"))
    assert set(row27.profiles) == {"modern", "2.6.18", "draft", "legacy"}
    assert set(load_file(find("row28-forced-write-private")).profiles) == {"modern", "2.6.18"}


@pytest.mark.mount
@pytest.mark.parametrize("name", NAMES)
def test_scenario_holds(name: str, library_results: dict[str, Any]) -> None:
    played = library_results[name]
    assert played, "no policy played"
    for run, outcome in played.items():  # "POLICY on PROFILE"
        assert outcome["failed"] == [], f"{name} under {run}"
        assert outcome["mount_checks"] >= 3, f"{name} under {run}: checked through the mount"
