"""The report's plot of the dirty-throttling model's own samples (`DirtyRecorder` rows):
every threshold and device line drawn, and the device zoomed when its share is small
(FUSE's bdi: max_ratio 1 %), so its throttling is visible at all. Pure functions."""

from __future__ import annotations

import re

from fusefs.scenario.report_svg import model_svg


def rows(device_dirty: float, wb_thresh: float) -> list[dict[str, float]]:
    return [
        {"time": t / 10, "dirty": device_dirty + t % 3, "writeback": 0, "thresh": 1638,
         "bg_thresh": 819, "freerun": 1228, "setpoint": 1433, "limit": 1638,
         "fuse:dirty": device_dirty + t % 3, "fuse:wb_thresh": wb_thresh}
        for t in range(50)
    ]  # fmt: skip


def test_every_line_and_a_zoom_on_a_small_device() -> None:
    svg = model_svg(rows(12, 16))
    assert svg.count("<svg") == 2  # the whole domain, then the device alone
    titles = re.findall(r"<title>([^<]+)</title>", svg)
    assert titles[:7] == ["dirty (all devices)", "dirty thresh", "setpoint", "freerun",
                          "background thresh", "fuse dirty", "fuse wb_thresh"]  # fmt: skip
    assert titles[7:] == ["fuse dirty", "fuse wb_thresh"]
    top_tick = re.findall(r'text-anchor="end">(\d+)</text>', svg.split("</svg>")[1])[-1]
    assert top_tick == "16"  # zoomed to the device's own scale


def test_no_zoom_when_the_device_has_most_of_the_limit() -> None:
    svg = model_svg(rows(1200, 1500))
    assert svg.count("<svg") == 1
    assert model_svg([]) == ""
