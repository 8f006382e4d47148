"""make bench-failover's tables and files (tests/bench/failover.py), offline, from made-up
results (benchkit.py; no lab): the rows side by side per profile and a timeline per fault, the
maintenance row, and a run of some faults merged into an earlier run's records.json."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from benchkit import panels, requests, result
from tests.bench import failover
from tests.bench.timeline import Request, load_records, write_svgs

OUT_BACK = [{"action": "out", "ok": True, "seconds": 23.14, "error": None},
            {"action": "back", "ok": True, "seconds": 41.0, "error": None}]


def maintenance(failed: int, steps=OUT_BACK) -> dict:
    """A result of failover.run_fault for the maintenance, made up: no stale clients ran."""
    return {**result("maintenance", failed), "fault": "maintenance of the VIP holder", "stale": None,
            "witness": None, "steps": steps}


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


def test_the_maintenance_row_gives_each_run_and_says_when_one_failed():
    back_failed = [OUT_BACK[0], {"action": "back", "ok": False, "seconds": 600.0, "error": "exit 1"}]
    rows = failover.failover_rows({"anchors": [maintenance(4)], "deployed": [maintenance(0, back_failed)]})
    assert rows[0][:4] == ("maintenance of the VIP holder (out 23.1 s, back 41.0 s)", "anchors", "3.0 s", "4/300")
    assert rows[1][:2] == ("(out 23.1 s, back FAILED (exit 1))", "deployed")
    lost = failover.FAILOVER_HEADER.index("acked writes lost")
    assert rows[1][lost] == "0 of 147" and rows[1][-1] == "-"  # no keystone loop ran
    assert failover.steps_note(result("haproxy-stopped", 0)) == ""  # the other faults: no commands


def test_the_maintenance_stale_row_is_na_and_the_report_says_why(tmp_path, capsys):
    by_profile = {"anchors": [result("haproxy-stopped", 3), maintenance(4)],
                  "deployed": [result("haproxy-stopped", 0), maintenance(0)]}
    stale = failover.stale_rows(by_profile)
    assert stale[2] == ("maintenance of the VIP holder", "anchors", "n/a", "n/a", "n/a", "n/a")
    assert stale[0][3] == "0.0/4.2"  # the other faults as before
    failover.report(by_profile, tmp_path, complete=True)
    assert failover.STALE_NA in capsys.readouterr().out
    md = (tmp_path / "failover.md").read_text()
    assert failover.STALE_NA in md and "[maintenance](maintenance.svg)" in md
    svg = ET.fromstring((tmp_path / "maintenance.svg").read_text())
    assert [g.get("data-profile") for g in panels(svg)] == ["anchors", "deployed"]


def test_a_run_of_some_faults_keeps_the_others_records_and_rows(tmp_path, capsys):
    full = {p: [result(slug, failed) for slug in failover.FAULTS[:5]]
            for p, failed in (("anchors", 7), ("deployed", 1))}
    failover.report(full, tmp_path, complete=True)
    before = (tmp_path / "haproxy-stopped.svg").read_text()
    earlier = failover.earlier_results(tmp_path)
    assert failover.failover_rows(earlier) == failover.failover_rows(full)  # the figures came back whole
    assert failover.stale_rows(earlier) == failover.stale_rows(full)

    # now: the maintenance in both profiles, and the first fault again in `deployed` only
    again = {**result("haproxy-stopped", 9), "requests": requests()}  # other requests: another panel
    now = {"anchors": [maintenance(4)], "deployed": [again, maintenance(0)]}
    merged = failover.merge(earlier, now)
    assert list(merged) == ["anchors", "deployed"]
    assert [r["slug"] for r in merged["anchors"]] == list(failover.FAULTS[:6])  # those that ran, in FAULTS order
    assert [r["http_failed"] for r in merged["deployed"]] == [9, 1, 1, 1, 1, 0]  # replaced, kept, new
    failover.report(merged, tmp_path, complete=True, kept=failover.FAULTS[1:5])
    records = json.loads((tmp_path / "records.json").read_text())
    assert list(records) == list(failover.FAULTS[:6])
    assert [run["profile"] for run in records["maintenance"]["runs"]] == ["anchors", "deployed"]
    assert records["maintenance"]["runs"][0]["figures"]["steps"] == OUT_BACK
    md = (tmp_path / "failover.md").read_text()
    assert "kept from the earlier records.json: holder-power-cut" in md
    assert "| fault holder-link-cut | anchors | 3.0 s | 7/300 |" in md  # an earlier row, as it was
    assert "|  | deployed | 3.0 s | 9/300 |" in md  # the fault run again: this run's
    assert "(out 23.1 s, back 41.0 s)" in md
    assert (tmp_path / "haproxy-stopped.svg").read_text() != before  # redrawn with this run's panel
    assert (tmp_path / "holder-link-cut.svg").exists()
    # and merged once more: nothing lost, nothing doubled
    remerged = failover.merge(failover.earlier_results(tmp_path), {})
    assert failover.failover_rows(remerged) == failover.failover_rows(merged)


def test_a_records_json_without_figures_merges_with_what_its_requests_give(tmp_path):
    reqs = requests(failed_at=1.0) + [Request(2.5, "db", False, 5.0), Request(4.5, "db", True, 0.01)]
    (tmp_path / "records.json").write_text(json.dumps(
        {"holder-power-cut": {"fault": "VIP holder's power cut", "runs": [
            {"profile": "deployed", "vip_moved": 0.6, "requests": reqs}]}}))
    earlier = failover.earlier_results(tmp_path)
    (r,) = earlier["deployed"]
    assert (r["http_failed"], r["http_total"], r["db_failed"], r["db_total"], r["acked"]) == (1, 30, 1, 17, 16)
    assert r["db_outage"] == 0.5  # the failed write at 2.5 s, the next acknowledged one at 3 s
    merged = failover.merge(earlier, {"deployed": [maintenance(0)]})
    rows = failover.failover_rows(merged)
    lost = failover.FAILOVER_HEADER.index("acked writes lost")
    assert rows[0][0] == "VIP holder's power cut" and rows[0][lost] == "? of 16"
    assert failover.stale_rows(merged)[0][2:] == ("not recorded",) * 4
    failover.report(merged, tmp_path, complete=True, kept=("holder-power-cut",))
    records = load_records(tmp_path / "records.json")
    assert list(records) == ["holder-power-cut", "maintenance"]
    assert records["holder-power-cut"]["runs"][0]["requests"] == reqs


def test_the_faults_are_grouped_in_the_bench_order_whatever_the_profiles_hold():
    by_profile = {"anchors": [result("maintenance", 0)],
                  "deployed": [result("backend-power-cut", 0), result("maintenance", 0), result("haproxy-stopped", 0)]}
    assert [g[0][1]["slug"] for g in failover.by_fault(by_profile)] == ["haproxy-stopped", "backend-power-cut",
                                                                        "maintenance"]


def test_a_keystone_loop_gives_its_calls_failed_and_longest_gap():
    """The keystone loop's calls (make keystone): failed of all and the longest span between two
    answered calls, in the row and kept through records.json."""
    reqs = requests(failed_at=1.0) + [Request(t / 2, "keystone", not 2 <= t <= 5, 0.1) for t in range(-4, 20)]
    figures = failover.figures_of(reqs)
    assert (figures["ks_failed"], figures["ks_total"]) == (4, 24)
    assert figures["ks_gap"] == pytest.approx(2.5)  # answered at 0.6 s, next at 3.1 s
    assert failover.keystone_cell(figures) == "4 of 24, 2.5 s"
