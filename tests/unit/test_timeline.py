"""make bench-failover's output, offline: the timeline of one fault (tests/bench/timeline.py,
records in, SVG out) and the tables and files the bench writes from its results, on made-up
results (no lab)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from tests.bench import failover
from tests.bench.timeline import Request, load_records, percentile, timeline_svg, write_svgs

SVG = "{http://www.w3.org/2000/svg}"
MARKS = {"api ok", "api failed", "db ok", "db failed"}


def requests(failed_at: float | None = None) -> list[Request]:
    """API GETs every 0.5 s and writes every second from 3 s before the fault to 12 s after,
    far enough apart that each is a point of its own; `failed_at`: that GET failed (1 s)."""
    api = [Request(t / 2, "api", t / 2 != failed_at, 1.0 if t / 2 == failed_at else 0.004 + t / 1000)
           for t in range(-6, 24)]
    db = [Request(float(t), "db", True, 0.01) for t in range(-3, 12)]
    return api + db


def runs(failed_at: float | None = None) -> list[dict]:
    return [{"profile": "anchors", "requests": requests(failed_at), "vip_moved": 4.2},
            {"profile": "deployed", "requests": requests(), "vip_moved": 0.6}]


def panels(root) -> list:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]


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


def result(slug: str, failed: int) -> dict:
    """A result of failover.run_fault, made up."""
    return {"slug": slug, "fault": f"fault {slug}", "holder": "node01", "new_holder": "node02", "vip_moved": 3.0,
            "http_outage": 1.0, "http_failed": failed, "http_total": 300, "api_p50": 0.004, "api_p99": 0.25,
            "db_outage": 2.0, "db_failed": 3, "db_total": 150, "acked": 147, "lost": 0, "restore_notes": [],
            "stale": {"http": (0.0, 4.2), "db": (0.0, 4.3), "direct": None}, "witness": "node03",
            "requests": requests(failed_at=1.0 if failed else None)}


def test_the_bench_writes_the_profiles_side_by_side_and_one_timeline_per_fault(tmp_path, capsys):
    by_profile = {"anchors": [result("haproxy-stopped", 12), result("holder-power-cut", 40)],
                  "deployed": [result("haproxy-stopped", 0), result("holder-power-cut", 5)]}
    rows = failover.failover_rows(by_profile)
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("fault haproxy-stopped", "anchors", "12/300"), ("", "deployed", "0/300"),
        ("fault holder-power-cut", "anchors", "40/300"), ("", "deployed", "5/300")]
    assert rows[0][4:7] == ("4 ms", "250 ms", "2.0 s")
    failover.report(by_profile, tmp_path, complete=True)
    assert "anchors" in capsys.readouterr().out
    md = (tmp_path / "failover.md").read_text()
    assert "| fault haproxy-stopped | anchors | 3.0 s | 12/300 |" in md
    assert "(haproxy-stopped.svg)" in md and "(holder-power-cut.svg)" in md
    assert "haproxy_retry_on=''" in md  # the anchors' values, from the one source
    for slug in ("haproxy-stopped", "holder-power-cut"):
        svg = (tmp_path / f"{slug}.svg").read_text()
        assert [g.get("data-profile") for g in panels(ET.fromstring(svg))] == ["anchors", "deployed"]
    # the records redraw the same pictures (python -m tests.bench.timeline records.json)
    records = load_records(tmp_path / "records.json")
    assert json.loads((tmp_path / "records.json").read_text()).keys() == {"haproxy-stopped", "holder-power-cut"}
    again = tmp_path / "again"
    for path in write_svgs(records, again):
        assert path.read_text() == (tmp_path / path.name).read_text()
