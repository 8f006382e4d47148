"""The failover bench's pictures: per fault, a timeline of every request through the VIP.

Pure (records in, SVG text out, no lab, no dependency): tested offline in
tests/unit/test_timeline.py. x: seconds from the fault (the fault instant is a dashed line);
y: the request's latency (time until its answer, or until it failed), on a log scale; colour:
the outcome (ok / failed); shape: what the request was (API GET: dot, DB write: square); one
panel per profile, the same axes in each, so the profiles compare at a glance. The x axis ends
8 s after the last failed request of any profile (the counts above each panel are of all).

    python -m tests.bench.timeline docs/bench-failover/records.json   # redraw from a run's records
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

from tests.svg import document, escape, header, quoteattr, tick, tick_label


class Request(NamedTuple):
    """One request through the VIP: started `t` s after the fault (negative: before it),
    `kind` "api" (HTTP GET), "db" (a write) or "keystone" (a token and a project created and
    deleted: lab/keystone.py), answered or not, `latency` s until its
    answer or its failure."""

    t: float
    kind: str
    ok: bool
    latency: float


WIDTH = 760
LEFT, RIGHT = 64, 16  # px: the y axis's labels, the right margin
TOP = 52  # px: title and legend
PANEL = 170  # px: one profile's plot
GAP = 34  # px: between panels (the panel's title)
BOTTOM = 40  # px: the x axis's labels
MIN_END, TAIL = 12.0, 8.0  # s: the x axis goes on this long after the last failure
Y_MIN, Y_MAX = 0.001, 10.0  # s: 1 ms to 10 s (faster: drawn at 1 ms; slower: at 10 s)
COLOUR = {True: "#2a9d3f", False: "#d62728"}
VIP_COLOUR = "#1f5fbf"


def longest_ack_gap(events) -> float:
    """The longest span between consecutive acknowledgements of (start, ok, latency) events,
    and from the last one to the end of a failure after it (a loop that ended failing); 0:
    nothing answered."""
    events = list(events)
    acks = sorted(t + lat for t, ok, lat in events if ok)
    if not acks:
        return 0.0
    tail = max((t + lat for t, ok, lat in events if not ok and t + lat > acks[-1]), default=acks[-1])
    return max([b - a for a, b in zip(acks, acks[1:])] + [tail - acks[-1]])


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) of `values`, nearest rank; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _step(span: float) -> float:
    """A tick step that gives at most 12 ticks over `span` seconds."""
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120):
        if span / step <= 12:
            return step
    return 300


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def timeline_svg(title: str, runs: list[dict], x_end: float | None = None) -> str:
    """The SVG text of one fault's timeline. `runs`: one per profile, in order, each
    {"profile": name, "requests": [Request, ...], "vip_moved": s after the fault or None}.
    `x_end`: where the x axis ends (a fault that lasts, as a rolling upgrade), instead of
    TAIL s after the last failure."""
    every = [r for run in runs for r in run["requests"]]
    x0 = math.floor(min([-3.0, *(r.t for r in every)]))
    # the clients run on until the slowest stale connection settles (minutes): the picture ends
    # TAIL s after the last failure of any profile (at least MIN_END), where the records end if sooner
    end = max([r.t + r.latency for r in every] or [0.0])
    last_failure = max([r.t + r.latency for r in every if not r.ok] or [0.0])
    x1 = math.ceil(x_end if x_end is not None else min(end, max(MIN_END, last_failure + TAIL)))
    x1 = max(x1, x0 + 1)
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + len(runs) * (PANEL + GAP) + BOTTOM

    def px(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * plot_w

    def py(top: float, latency: float) -> float:
        v = min(max(latency, Y_MIN), Y_MAX)
        return top + PANEL - (math.log10(v) - math.log10(Y_MIN)) / (math.log10(Y_MAX) - math.log10(Y_MIN)) * PANEL

    style = (f"<style>.ok{{stroke:{COLOUR[True]}}} .failed{{stroke:{COLOUR[False]}}} .api,.db,.keystone{{fill:none;stroke-opacity:0.7}} "
             ".api{stroke-width:4;stroke-linecap:round} .db{stroke-width:3.5;stroke-linecap:square} "
             ".keystone{stroke-width:2;stroke-linecap:butt}</style>")
    out = [*header(WIDTH, height, view_box=True, head=(f"<title>{escape(title)}</title>", style)),
           f'<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>']
    if any(r.kind == "keystone" for run in runs for r in run["requests"]):
        legend = [("api ok", "API ok"), ("api failed", "API failed"), ("db ok", "DB ok"), ("db failed", "DB failed"),
                  ("keystone ok", "keystone ok"), ("keystone failed", "keystone failed")]
    else:
        legend = [("api ok", "API GET ok"), ("api failed", "API GET failed"),
                  ("db ok", "DB write ok"), ("db failed", "DB write failed")]
    x = LEFT
    for cls, label in legend:
        out.append(_dots(cls, [(x + 4, 36)]))
        out.append(f'<text x="{x + 12}" y="40">{label}</text>')
        x += 24 + 6.2 * len(label)
    out.append(f'<line x1="{x}" y1="36" x2="{x + 16}" y2="36" stroke="black" stroke-dasharray="4 3"/>'
               f'<text x="{x + 20}" y="40">fault</text>')
    x += 56
    out.append(f'<line x1="{x}" y1="36" x2="{x + 16}" y2="36" stroke="{VIP_COLOUR}" stroke-dasharray="2 2"/>'
               f'<text x="{x + 20}" y="40">VIP on another node</text>')

    step = _step(x1 - x0)
    ticks = [t for t in range(math.ceil(x0 / step) * step, x1 + 1, step)]
    for i, run in enumerate(runs):
        top = TOP + GAP + i * (PANEL + GAP)
        reqs = run["requests"]
        failed = {k: sum(1 for r in reqs if r.kind == k and not r.ok) for k in ("api", "db", "keystone")}
        total = {k: sum(1 for r in reqs if r.kind == k) for k in ("api", "db", "keystone")}
        calls = f', keystone calls failed {failed["keystone"]}/{total["keystone"]}' if total["keystone"] else ""
        out.append(f'<g class="panel" data-profile={quoteattr(run["profile"])}>')
        out.append(f'<text x="{LEFT}" y="{top - 8}" font-weight="bold">{escape(run["profile"])}</text>'
                   f'<text x="{LEFT + 80}" y="{top - 8}">API GETs failed {failed["api"]}/{total["api"]}, '
                   f'DB writes failed {failed["db"]}/{total["db"]}{calls}</text>')
        out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>')
        for decade in range(round(math.log10(Y_MIN)), round(math.log10(Y_MAX)) + 1):
            v = 10.0 ** decade
            y = py(top, v)
            label = f"{v * 1000:.0f} ms" if v < 1 else f"{v:.0f} s"
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                       f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        for t in ticks:
            out.append(tick(px(t), top, top + PANEL + 4, "#e4e4e4"))
        # one path per kind and outcome, a dot per request (ok first, failed on top); dots of
        # the same path closer than 2 px are drawn once
        for kind in ("api", "db", "keystone"):
            for ok in (True, False):
                dots = dict.fromkeys((round(px(r.t) / 2) * 2, round(py(top, r.latency) / 2) * 2)
                                     for r in reqs if r.kind == kind and r.ok is ok and r.t <= x1)
                if dots:
                    out.append(_dots(f'{kind} {"ok" if ok else "failed"}', dots))
        out.append(f'<line class="fault" x1="{px(0):.1f}" y1="{top}" x2="{px(0):.1f}" y2="{top + PANEL}" '
                   f'stroke="black" stroke-dasharray="4 3"/>')
        if run.get("vip_moved") is not None:
            xv = px(run["vip_moved"])
            out.append(f'<line class="vip-moved" x1="{xv:.1f}" y1="{top}" x2="{xv:.1f}" y2="{top + PANEL}" '
                       f'stroke="{VIP_COLOUR}" stroke-dasharray="2 2"/>'
                       f'<text x="{xv + 3:.1f}" y="{top + 12}" fill="{VIP_COLOUR}">{_num(run["vip_moved"])} s</text>')
        out.append("</g>")
    base = TOP + len(runs) * (PANEL + GAP)
    for t in ticks:
        out.append(tick_label(px(t), base + 14, str(t)))
    out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{base + 32}" text-anchor="middle">'
               f'seconds from the fault, until {_num(TAIL)} s after the last failure (latency: log scale; '
               f'the counts: every request)</text>')
    return document(out)


def _dots(cls: str, points) -> str:
    """A path of dots (zero-length segments: the line cap draws them; `cls` says which shape,
    round for API GETs, square for DB writes, a short upright stroke for keystone calls, and
    which colour): one element for many points."""
    draw = "v6" if cls.startswith("keystone") else "h0"  # keystone: a short upright stroke
    return f'<path class="{cls}" d="' + "".join(f"M{x:.0f} {y - (3 if draw == 'v6' else 0):.0f}{draw}"
                                                for x, y in points) + '"/>'


def load_records(path: Path) -> dict:
    """records.json as the bench writes it: {slug: {"fault": title, "runs": [...]}}, the
    requests back as Request tuples."""
    records = json.loads(path.read_text())
    for fault in records.values():
        for run in fault["runs"]:
            run["requests"] = [Request(*r) for r in run["requests"]]
    return records


def write_svgs(records: dict, out: Path) -> list[Path]:
    """One <slug>.svg per fault in `out`; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for slug, fault in records.items():
        path = out / f"{slug}.svg"
        path.write_text(timeline_svg(fault["fault"], fault["runs"]))
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    path = Path(argv[0])
    for svg in write_svgs(load_records(path), path.parent):
        print(svg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
