"""The visual report's drawings: inline SVG, no script, nothing fetched.

Pure functions of ``fusefs.scenario.report.Recording`` lists (what a ``Recorder`` saw of one run
per policy): per policy a timeline (a row per simulated process and the flusher, the
story's steps as bars, each event a glyph; a long story is condensed to ``MAX_COLUMNS``
columns) with the dirty pages beneath on the same axis; dirty pages after each step of
the story, a line per policy; dirty pages over simulated time until the mount; and the
dirty-throttling model's own samples (``sim_mmu.writeback.DirtyRecorder`` rows) against
the thresholds ``balance_dirty_pages`` steers by.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from fusefs.scenario.language import Scenario, Step

if TYPE_CHECKING:
    from fusefs.scenario.report import Item, Recording

MAX_COLUMNS = 130  # a longer timeline is condensed: several events to a column


def act_steps(steps: list[Step]) -> list[Step]:
    """The story's act steps in order, together() children included."""
    out: list[Step] = []
    for s in steps:
        if s.kind == "together":
            out.extend(act_steps(s.children))
        elif not s.is_expectation and s.kind != "mount":
            out.append(s)
    return out


GLYPHS: dict[str, tuple[str, str]] = {  # kind -> (shape, colour)
    "fault": ("circle", "#7a7a7a"),
    "wp_fault": ("circle", "#444"),
    "mkwrite": ("diamond", "#2a9d3a"),
    "mkwrite_refused": ("diamond", "#d62828"),
    "sigbus": ("cross", "#d62828"),
    "cow": ("triangle", "#c2185b"),
    "mkclean": ("square", "#1a8fa0"),
    "reserve": ("triangle", "#6c4ab6"),
    "writeback": ("square", "#1d4ed8"),
    "writeback_error": ("square", "#f08c00"),
    "throttle": ("bar", "#e9c46a"),
    "other": ("dot", "#aaa"),
}
LEGEND = (("fault", "fault"), ("wp_fault", "write-protect fault"), ("mkwrite", "page_mkwrite ok"),
          ("mkwrite_refused", "page_mkwrite refused"), ("sigbus", "SIGBUS"),
          ("cow", "COW copy"), ("mkclean", "mkclean (write-protect)"),
          ("reserve", "block reserved"), ("writeback", "writeback ok"),
          ("writeback_error", "writeback failed"), ("throttle", "throttle pause"))  # fmt: skip
POLICY_COLOURS = ("#d62828", "#1d4ed8", "#2a9d3a", "#f08c00", "#8e44ad", "#1a8fa0", "#6b7280")


def _glyph_kind(it: Item) -> str:
    text = it.detail.upper()
    if it.kind == "mkwrite":
        return "mkwrite" if text.endswith(("LOCKED", "OK", " 0")) else "mkwrite_refused"
    if it.kind == "writeback":
        return "writeback" if "WRITTEN" in text or "ok" in it.detail else "writeback_error"
    return it.kind if it.kind in GLYPHS else "other"


def shape(kind: str, x: float, y: float, title: str) -> str:
    shape, colour = GLYPHS[kind]
    t = f"<title>{html.escape(title)}</title>"
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y}" r="4.5" fill="{colour}">{t}</circle>'
    if shape == "diamond":
        pts = f"{x},{y - 7} {x + 6},{y} {x},{y + 7} {x - 6},{y}"
        return f'<polygon points="{pts}" fill="{colour}">{t}</polygon>'
    if shape == "triangle":
        pts = f"{x},{y - 6} {x + 6},{y + 5} {x - 6},{y + 5}"
        return f'<polygon points="{pts}" fill="{colour}">{t}</polygon>'
    if shape == "square":
        return (
            f'<rect x="{x - 5:.1f}" y="{y - 5}" width="10" height="10" fill="{colour}">{t}</rect>'
        )
    if shape == "cross":
        return (f'<g stroke="{colour}" stroke-width="3">{t}<line x1="{x - 6}" y1="{y - 6}" '
                f'x2="{x + 6}" y2="{y + 6}"/><line x1="{x - 6}" y1="{y + 6}" x2="{x + 6}" '
                f'y2="{y - 6}"/></g>')  # fmt: skip
    if shape == "bar":
        return f'<rect x="{x - 3:.1f}" y="{y - 9}" width="6" height="18" fill="{colour}">{t}</rect>'
    return f'<circle cx="{x:.1f}" cy="{y}" r="2.5" fill="{colour}">{t}</circle>'


def timeline_svg(rec: Recording, dirty_max: int, dirty_limit: int | None) -> str:
    """One policy's timeline: a row per simulated process and the flusher, the story's steps
    as bars, each event a glyph; dirty pages beneath on the same axis."""
    events = [it for it in rec.items if it.kind != "step"]
    tracks = sorted({it.track for it in rec.items} | {0}, key=lambda t: (t == 0, t))
    names = rec.result.tracks
    per = max(1, math.ceil(len(events) / MAX_COLUMNS))  # events per column (condensed)
    columns = math.ceil(len(events) / per)
    slot = max(7.0, min(40.0, 940.0 / max(1, columns)))
    left, row, top = 150, 38, 30
    xs: dict[int, float] = {}
    n = 0
    for it in rec.items:
        xs[it.seq] = left + slot * (n // per + 1)
        if it.kind != "step":
            n += 1
    x = left + slot * (columns + 1)
    width = int(x + slot + 10)
    rows_h = top + row * len(tracks)
    dirty_h = 70
    height = rows_h + dirty_h + 34
    y_of = {t: top + row * n + row // 2 for n, t in enumerate(tracks)}
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">']  # fmt: skip
    if per > 1:
        out.append(f'<text x="6" y="14" class="tick">condensed: {len(events)} events, up to {per} '
                   "a column (one mark per kind); only failed steps drawn</text>")  # fmt: skip
    for t in tracks:
        y = y_of[t]
        out.append(f'<line x1="{left}" y1="{y}" x2="{width - 5}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(f'<text x="6" y="{y + 4}" class="track">'
                   f'{html.escape(names.get(t, f"pid {t}"))}</text>')  # fmt: skip
    for it in rec.items:  # the steps, behind the events
        if it.kind != "step" or it.track not in y_of:
            continue
        bad = not it.detail.endswith("→ ok")
        if per > 1 and not bad:
            continue  # condensed: only the steps that did not succeed
        x0 = xs[it.seq] - slot / 2
        x1 = xs.get(it.end_seq, x) - slot / 2
        x1 = max(x1, x0 + slot * 0.8)
        out.append(f'<rect x="{x0:.1f}" y="{y_of[it.track] - 12}" width="{x1 - x0:.1f}" '
                   f'height="24" rx="4" class="{"stepbad" if bad else "step"}">'
                   f"<title>{html.escape(it.detail)}</title></rect>")  # fmt: skip
        label = it.detail.split(": ", 1)[-1]
        if len(label) * 5.6 < x1 - x0 - 4:  # room for the label above the bar
            out.append(f'<text x="{x0 + 3:.1f}" y="{y_of[it.track] - 14}" class="steplabel">'
                       f"{html.escape(label)}</text>")  # fmt: skip
    last_time, last_x = None, -100.0
    counts: dict[tuple[float, int, str], int] = {}
    for it in events:
        key = (xs[it.seq], it.track, _glyph_kind(it))
        counts[key] = counts.get(key, 0) + 1
    for it in events:
        if it.kind == "mount":
            out.append(f'<line x1="{xs[it.seq]:.1f}" y1="{top - 8}" x2="{xs[it.seq]:.1f}" '
                       f'y2="{rows_h + dirty_h}" class="mount"/><text x="{xs[it.seq] - 3:.1f}" '
                       f'y="{top - 14}" class="tick" text-anchor="end">mounted: real time '
                       "from here</text>")  # fmt: skip
            continue
        key = (xs[it.seq], it.track, _glyph_kind(it))
        if it.track in y_of and key in counts:
            title = f"t={it.time:.6f}s {names.get(it.track, it.track)}: {it.kind} {it.detail}"
            if counts[key] > 1:
                title = f"{counts[key]} × {it.kind} from t={it.time:.3f}s, the first: {it.detail}"
            del counts[key]  # one glyph per column, track and kind
            out.append(shape(key[2], xs[it.seq], y_of[it.track], title))
        if (last_time is None or it.time - last_time > 1e-4) and xs[it.seq] - last_x > 70:
            last_x = xs[it.seq]
            out.append(f'<text x="{xs[it.seq]:.1f}" y="{height - 4}" class="tick">'
                       f"t={it.time:.3g}s</text>")  # fmt: skip
            last_time = it.time
    out.append(_dirty_strip(rec, xs, left, width, rows_h, dirty_h, dirty_max, dirty_limit))
    out.append("</svg>")
    return "".join(out)


def _dirty_strip(rec: Recording, xs: dict[int, float], left: int, width: int, top: int,
                 h: int, dirty_max: int, limit: int | None) -> str:  # fmt: skip
    scale = max(1, dirty_max, limit or 0)
    base = top + h - 6

    def y(v: int) -> float:
        return base - (h - 18) * v / scale

    pts = [f"{left},{base}"]
    prev = 0
    for it in rec.items:
        if it.kind in ("step", "mount") or it.dirty == prev:
            continue
        pts.append(f"{xs[it.seq]:.1f},{y(prev):.1f}")
        pts.append(f"{xs[it.seq]:.1f},{y(it.dirty):.1f}")
        prev = it.dirty
    pts.append(f"{width - 5},{y(prev):.1f}")
    pts.append(f"{width - 5},{base}")
    out = [f'<text x="6" y="{top + h // 2 + 4}" class="track">dirty pages (max {dirty_max})</text>',
           f'<line x1="{left}" y1="{base}" x2="{width - 5}" y2="{base}" stroke="#999"/>',
           f'<polygon points="{" ".join(pts)}" class="dirty"/>']  # fmt: skip
    if limit is not None:
        out.append(f'<line x1="{left}" y1="{y(limit):.1f}" x2="{width - 5}" y2="{y(limit):.1f}" '
                   f'class="limit"/><text x="{left + 4}" y="{y(limit) - 3:.1f}" class="tick">'
                   f"dirty limit {limit}</text>")  # fmt: skip
    return "".join(out)


def dirty_plot_svg(scenario: Scenario, recordings: list[Recording]) -> str:
    """Dirty pages after each step of the story, a line per policy."""
    steps = act_steps(scenario.steps)
    if not steps:
        return "<p>The story has no act steps.</p>"
    top_v = max([1, *(v for r in recordings for v in r.dirty_after_step.values())])
    limits = [r.result.counters.get("dirty_limit_pages") for r in recordings]
    top_v = max([top_v, *(v for v in limits if isinstance(v, int))])
    left, w, h, top = 60, 1080, 240, 16
    dx = w / max(1, len(steps) - 1) if len(steps) > 1 else w
    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{left + w + 30}" '
           f'height="{h + top + 110}">']  # fmt: skip
    for v in sorted({0, top_v, math.ceil(top_v / 2)}):
        y = top + h - h * v / top_v
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v}</text>'
        )
    every = max(1, math.ceil(len(steps) / 40))  # at most 40 labels
    for n, s in enumerate(steps):
        if n % every:
            continue
        x = left + n * dx
        label = html.escape(f"{s.kind} {s.name or ''}".strip())
        out.append(f'<text x="{x:.1f}" y="{top + h + 14}" class="tick" '
                   f'transform="rotate(40 {x:.1f} {top + h + 14})">{label}</text>')  # fmt: skip
    for k, rec in enumerate(recordings):
        colour = POLICY_COLOURS[k % len(POLICY_COLOURS)]
        pts = [(left + n * dx, top + h - h * rec.dirty_after_step[id(s)] / top_v)
               for n, s in enumerate(steps) if id(s) in rec.dirty_after_step]  # fmt: skip
        offset = (k - (len(recordings) - 1) / 2) * 1.5  # equal lines stay visible
        path = " ".join(f"{px:.1f},{py + offset:.1f}" for px, py in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5">'
                   f"<title>{html.escape(rec.result.policy)}</title></polyline>")  # fmt: skip
        out += [
            f'<circle cx="{px:.1f}" cy="{py + offset:.1f}" r="3" fill="{colour}"/>'
            for px, py in (pts if len(pts) <= 80 else [])
        ]
        out.append(
            f'<text x="{left + 10 + 130 * k}" y="{top + h + 100}" '
            f'fill="{colour}" class="legend">━ {html.escape(rec.result.policy)}</text>'
        )
    out.append(f'<text x="14" y="{top + h / 2}" class="tick" transform="rotate(-90 14 '
               f'{top + h / 2})">dirty pages</text></svg>')  # fmt: skip
    return "".join(out)


def dirty_time_svg(recordings: list[Recording]) -> str:
    """Dirty pages over simulated time before the mount (virtual time: where throttling
    pauses and sleeping hooks show), a step line per policy; "" when time stood still."""
    series = []
    for rec in recordings:
        pts, prev = [], 0
        for it in rec.items:
            if it.kind == "mount":
                break
            if it.kind != "step":
                pts += [(it.time, prev), (it.time, it.dirty)]
                prev = it.dirty
        series.append((rec, pts))
    t_max = max((t for _, pts in series for t, _ in pts), default=0.0)
    if t_max <= 0:
        return ""
    v_max = max([1, *(v for _, pts in series for _, v in pts)])
    limits = [r.result.counters.get("dirty_limit_pages") for r in recordings]
    v_max = max([v_max, *(v for v in limits if isinstance(v, int))])
    left, w, h, top = 60, 1080, 200, 16
    out = [f'<svg class="plot" id="dirty-time" xmlns="http://www.w3.org/2000/svg" '
           f'width="{left + w + 30}" height="{h + top + 60}">']  # fmt: skip
    for n in range(6):
        x, t = left + w * n / 5, t_max * n / 5
        out.append(f'<text x="{x:.1f}" y="{top + h + 14}" class="tick" text-anchor="middle">'
                   f"{t:.3g} s</text>")  # fmt: skip
    for v in sorted({0, v_max, math.ceil(v_max / 2)}):
        y = top + h - h * v / v_max
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v}'
                   "</text>")  # fmt: skip
    for k, (rec, pts) in enumerate(series):
        colour = POLICY_COLOURS[k % len(POLICY_COLOURS)]
        pts = [*pts, (t_max, pts[-1][1])] if pts else pts
        off = (k - (len(series) - 1) / 2) * 2.0  # equal lines stay visible
        path = " ".join(f"{left + w * t / t_max:.1f},{top + h - h * v / v_max + off:.1f}"
                        for t, v in pts)  # fmt: skip
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                   f"<title>{html.escape(rec.result.policy)}</title></polyline>"
                   f'<text x="{left + 10 + 130 * k}" y="{top + h + 44}" fill="{colour}" '
                   f'class="legend">━ {html.escape(rec.result.policy)}</text>')  # fmt: skip
        limit = rec.result.counters.get("dirty_limit_pages")
        if isinstance(limit, int):
            y = top + h - h * limit / v_max
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" '
                       f'stroke="{colour}" class="limit"><title>dirty limit '
                       f"({html.escape(rec.result.policy)})</title></line>")  # fmt: skip
    out.append("</svg>")
    return "".join(out)


MODEL_LINES = [  # DirtyRecorder column -> (legend, colour, dashed)
    ("dirty", "dirty (all devices)", "#3182bd", False),
    ("thresh", "dirty thresh", "#d62828", True),
    ("setpoint", "setpoint", "#2a9d3a", True),
    ("freerun", "freerun", "#f08c00", True),
    ("bg_thresh", "background thresh", "#8e44ad", True),
]


def model_svg(rows: list[dict[str, float]]) -> str:
    """The dirty-throttling model's own samples (``DirtyRecorder``): global dirty pages and
    each device's, against the thresholds balance_dirty_pages steers by; and the devices
    alone, zoomed, when their share is a small part of the global limit (FUSE's 1 %)."""
    if not rows:
        return ""
    device = []
    for key in rows[0]:
        if key.endswith(":dirty"):
            device.append((key, key.replace(":dirty", " dirty"), "#1a8fa0", False))
        elif key.endswith(":wb_thresh"):
            device.append((key, key.replace(":wb_thresh", " wb_thresh"), "#c2185b", True))
    whole = _lines_svg(rows, [*MODEL_LINES, *device])
    small = max([0.0, *(r.get(k, 0.0) for r in rows for k, *_ in device)])
    if device and small < max(r.get("thresh", 0.0) for r in rows) / 10:
        return (
            whole
            + "<p>The device alone (its share is a small part of the limit):</p>"
            + (_lines_svg(rows, device))
        )
    return whole


def _lines_svg(rows: list[dict[str, float]], lines: list[tuple[str, str, str, bool]]) -> str:
    t0, t1 = rows[0]["time"], rows[-1]["time"]
    span = max(t1 - t0, 1e-9)
    v_max = max([1.0, *(r.get(k, 0.0) for r in rows for k, *_ in lines)])
    left, w, h, top = 60, 1080, 180, 12
    out = [f'<svg class="plot model" xmlns="http://www.w3.org/2000/svg" width="{left + w + 30}" '
           f'height="{h + top + 56}">']  # fmt: skip
    for n in range(6):
        out.append(f'<text x="{left + w * n / 5:.1f}" y="{top + h + 14}" class="tick" '
                   f'text-anchor="middle">{span * n / 5:.3g} s</text>')  # fmt: skip
    for v in (0, v_max / 2, v_max):
        y = top + h - h * v / v_max
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                   f"{v:.0f}</text>")  # fmt: skip
    step = max(1, len(rows) // 600)  # at most ~600 points a line
    for k, (key, label, colour, dashed) in enumerate(lines):
        pts = " ".join(
            f"{left + w * (r['time'] - t0) / span:.1f},{top + h - h * r.get(key, 0.0) / v_max:.1f}"
            for r in rows[::step]
        )
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"'
                   f"{dash}><title>{html.escape(label)}</title></polyline>"
                   f'<text x="{left + 10 + 150 * k}" y="{top + h + 40}" fill="{colour}" '
                   f'class="legend">━ {html.escape(label)}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def model_section(recordings: list[Recording]) -> str:
    parts = []
    for rec in recordings:
        series = getattr(rec.result, "dirty_series", None)
        rows = list(getattr(series, "rows", None) or [])
        if rows:
            parts.append(f"<h3>{html.escape(rec.result.policy)}</h3>{model_svg(rows)}")
    if not parts:
        return ""
    return ("<h2>The dirty-throttling model (balance_dirty_pages)</h2><p>Its own samples, "
            "in simulated time: dirty pages against the thresholds it steers by.</p>"
            + "".join(parts))  # fmt: skip
