"""The timeline picture of a soak (issue 21): one SVG, pure Python, from a saved history.

    python -m tests.soak timeline HISTORY.jsonl [--out FILE.svg]   (default: beside the history)

One lane per workload (SQL writes: list-append transactions and bank transfers; messages:
confirmed publishes and acknowledged consumes; keystone calls), a bar per second as tall as the
acknowledged operations of that second (each lane scaled to its own busiest second), a red
mark under every second with a failed or unknown outcome and no acknowledgement: the gaps the
checker's availability table counts. Every fault is a shaded band across the lanes, labelled
with its number and kind. Time runs left to right in minutes from the first record.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.svg import document, escape, header, tick, tick_label

LANES = (
    ("SQL writes", ("txn", "transfer")),
    ("messages", ("publish", "consume")),
    ("keystone", ("api",)),
)
WIDTH, LEFT, RIGHT, TOP = 1600, 110, 20, 40
LANE_H, GAP, LABELS = 90, 14, 120
COLOURS = {"ok": "#2b6cb0", "gap": "#c53030", "fault": "#f6ad55", "text": "#1a202c", "axis": "#718096"}


def _seconds(records: list[dict]) -> tuple[float, int]:
    """The first record's clock and the run's length in whole seconds (at least 1)."""
    stamps = [r["mono"] for r in records if "mono" in r]
    if not stamps:
        raise ValueError("the history has no timed record")
    return min(stamps), max(1, int(max(stamps) - min(stamps)) + 1)


def buckets(records: list[dict]) -> dict[str, tuple[Counter, Counter]]:
    """Per lane: (acknowledged per second, failed or unknown per second)."""
    start, _ = _seconds(records)
    lane_of = {f: name for name, fs in LANES for f in fs}
    out = {name: (Counter(), Counter()) for name, _ in LANES}
    for r in records:
        lane = lane_of.get(r.get("f"))
        if lane is None or r.get("type") not in ("ok", "fail", "info"):
            continue
        second = int(r["mono"] - start)
        out[lane][0 if r["type"] == "ok" else 1][second] += 1
    return out


def faults(records: list[dict]) -> list[tuple[int, str, float, float]]:
    """(number, kind, start, end) of every fault, in seconds from the first record; a fault
    without its end (the run died) lasts to the end."""
    start, length = _seconds(records)
    began, out = {}, []
    for r in records:
        if r.get("type") != "fault":
            continue
        if r["phase"] == "start":
            began[r["fault"]] = (r["kind"], r["mono"] - start)
        elif r["fault"] in began:
            kind, t0 = began.pop(r["fault"])
            out.append((r["fault"], kind, t0, r["mono"] - start))
    out += [(n, kind, t0, float(length)) for n, (kind, t0) in began.items()]
    return sorted(out)


def svg(records: list[dict], title: str = "soak") -> str:
    """The picture, as SVG text."""
    _, length = _seconds(records)
    lanes = buckets(records)
    shown = [(name, acks, fails) for name, (acks, fails) in lanes.items() if acks or fails]
    height = TOP + LABELS + len(shown) * (LANE_H + GAP) + 40
    span = WIDTH - LEFT - RIGHT

    def x(second: float) -> float:
        return LEFT + span * second / length

    parts = [*header(WIDTH, height),
             f'<text x="{LEFT}" y="20" font-size="14" fill="{COLOURS["text"]}">{escape(title)}</text>']
    bottom = TOP + LABELS + len(shown) * (LANE_H + GAP)
    for number, kind, t0, t1 in faults(records):
        parts.append(f'<rect x="{x(t0):.1f}" y="{TOP + LABELS - 4}" width="{max(1.0, x(t1) - x(t0)):.1f}" '
                     f'height="{bottom - TOP - LABELS + 4}" fill="{COLOURS["fault"]}" fill-opacity="0.35"/>')
        parts.append(f'<text transform="translate({x(t0) + 3:.1f},{TOP + LABELS - 8}) rotate(-60)" '
                     f'fill="{COLOURS["text"]}">{number} {escape(kind)}</text>')
    for i, (name, acks, fails) in enumerate(shown):
        top = TOP + LABELS + i * (LANE_H + GAP)
        base = top + LANE_H
        peak = max(acks.values(), default=1)
        parts.append(f'<text x="{LEFT - 8}" y="{top + LANE_H / 2:.0f}" text-anchor="end" '
                     f'fill="{COLOURS["text"]}">{escape(name)}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="{COLOURS["axis"]}"/>')
        w = max(0.6, span / length)
        for second, count in sorted(acks.items()):
            h = (LANE_H - 4) * count / peak
            parts.append(f'<rect x="{x(second):.1f}" y="{base - h:.1f}" width="{w:.2f}" height="{h:.1f}" '
                         f'fill="{COLOURS["ok"]}"/>')
        for second in sorted(s for s in fails if not acks.get(s)):
            parts.append(f'<rect x="{x(second):.1f}" y="{base + 1}" width="{w:.2f}" height="5" fill="{COLOURS["gap"]}"/>')
    for minute in range(0, length // 60 + 1):
        parts.append(tick(x(minute * 60), bottom, bottom + 5, COLOURS["axis"]))
        if length <= 600 or minute % 5 == 0:
            parts.append(tick_label(x(minute * 60), bottom + 18, f"{minute} min", COLOURS["axis"]))
    return document(parts)


def write(records: list[dict], out: str | Path, title: str = "soak") -> Path:
    path = Path(out)
    path.write_text(svg(records, title))
    return path
