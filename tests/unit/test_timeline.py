"""make bench-failover's pictures, offline: the timeline of one fault (tests/bench/timeline.py,
records in, SVG out), on made-up requests (benchkit.py; no lab). The tables and files the bench
writes from its results: test_failover.py."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from benchkit import SVG, panels, requests
from tests.bench.timeline import Request, percentile, timeline_svg

MARKS = {"api ok", "api failed", "db ok", "db failed"}


def runs(failed_at: float | None = None) -> list[dict]:
    return [{"profile": "anchors", "requests": requests(failed_at), "vip_moved": 4.2},
            {"profile": "deployed", "requests": requests(), "vip_moved": 0.6}]


def dots(panel) -> dict[str, list[tuple[float, float]]]:
    """A panel's requests as drawn: {"api ok": [(x, y), ...], ...} (a path of "Mx yh0" dots each)."""
    out = {}
    for el in panel.iter(f"{SVG}path"):
        out[el.get("class")] = [tuple(map(float, m.split())) for m in re.findall(r"M([\d.]+ [\d.]+)h0", el.get("d"))]
    return out


def marks(svg: str) -> dict[str, int]:
    """How many requests of each kind and outcome the panels draw."""
    counts = dict.fromkeys(MARKS, 0)
    for panel in panels(ET.fromstring(svg)):
        for cls, points in dots(panel).items():
            counts[cls] += len(points)
    return counts


def test_the_timeline_is_svg_with_every_request_the_fault_and_the_vip_move():
    svg = timeline_svg("VIP holder's power cut", runs())
    root = ET.fromstring(svg)  # parses as XML
    assert root.tag == f"{SVG}svg"
    assert [g.get("data-profile") for g in panels(root)] == ["anchors", "deployed"]
    assert marks(svg) == {"api ok": 60, "api failed": 0, "db ok": 30, "db failed": 0}
    for panel in panels(root):
        (fault,) = [el for el in panel.iter(f"{SVG}line") if el.get("class") == "fault"]
        assert fault.get("x1") == fault.get("x2")  # upright
        # at x = 0 s: the 6 GETs and 3 writes started before the fault are left of it
        xs = [x for points in dots(panel).values() for x, _ in points]
        assert sum(1 for x in xs if x < float(fault.get("x1"))) == 6 + 3
        assert len([el for el in panel.iter(f"{SVG}line") if el.get("class") == "vip-moved"]) == 1
    assert root.find(f"{SVG}title").text == "VIP holder's power cut"
    assert len(svg) < 60_000


def test_a_failed_request_changes_the_picture():
    ok, one_failed = timeline_svg("f", runs()), timeline_svg("f", runs(failed_at=1.0))
    assert one_failed != ok
    assert marks(one_failed)["api failed"] == 1 and marks(one_failed)["api ok"] == marks(ok)["api ok"] - 1
    assert "API GETs failed 1/30" in one_failed and "API GETs failed 1/30" not in ok


def test_the_same_point_is_drawn_once_and_no_vip_line_when_it_did_not_move():
    same = [Request(2.0, "api", True, 0.005)] * 50
    svg = timeline_svg("f", [{"profile": "deployed", "requests": same, "vip_moved": None}])
    assert marks(svg)["api ok"] == 1
    assert 'class="vip-moved"' not in svg and 'class="fault"' in svg


def test_the_quiet_tail_is_left_out_of_the_picture_not_out_of_the_counts():
    reqs = [Request(t / 2, "api", t != 4, 0.005 if t != 4 else 1.0) for t in range(-6, 300)]  # 150 s
    root = ET.fromstring(timeline_svg("f", [{"profile": "deployed", "requests": reqs, "vip_moved": None}]))
    (panel,) = panels(root)
    frame = panel.find(f"{SVG}rect")
    assert max(x for x, _ in dots(panel)["api ok"]) <= float(frame.get("x")) + float(frame.get("width"))
    ticks = [int(t.text) for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "middle" and t.text.lstrip("-").isdigit()]
    assert max(ticks) <= 12  # the failure at 2 s, answered at 3 s, then 8 s more: 11, at least 12
    assert "API GETs failed 1/306" in ET.tostring(root, encoding="unicode")


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
