"""Every figure of the documentation's tables (docs/failover.md, docs/design.md: the pages of
tests/bench/figures.py PAGES, the README among them) is the figure of a record the repository
keeps (figures.py reads them: docs/bench-failover/, docs/bench-deploy/, docs/bench-durability/),
under the configuration that record ran with."""

from __future__ import annotations

import copy
import json

import pytest

from tests.bench import failover, figures, records

PAGES = figures.read_pages()


def planted(old: str, new: str) -> dict[str, str]:
    """PAGES with the one occurrence of `old` (in whichever page holds it) replaced by `new`."""
    where = [page for page, text in PAGES.items() if old in text]
    assert len(where) == 1 and PAGES[where[0]].count(old) == 1, (old, where)
    return {**PAGES, where[0]: PAGES[where[0]].replace(old, new)}


def test_the_tables_are_the_records():
    assert figures.problems(PAGES) == []


def test_the_figure_tables_are_in_the_docs_not_the_readme():
    headers = {h for h, _ in figures.expected()}
    assert not [t for t in figures.tables(PAGES["README.md"]) if t.header in headers]
    found = {t.header for page in ("docs/failover.md", "docs/design.md", "docs/operations.md", "docs/monitoring.md") for t in figures.tables(PAGES[page])}
    assert headers <= found
    assert figures.LIFECYCLE.search(PAGES["docs/design.md"])


def test_every_table_with_figures_is_checked_or_declared_settings():
    checked = {h for h, _ in figures.expected()}
    for text in PAGES.values():
        for t in figures.tables(text):
            measured = any(figures.MEASURED.search(c) for r in t.rows for c in r)
            assert t.header in checked or t.header in figures.NOT_FIGURES or not measured, t.header
    # the figure tables are all in the pages, each with at least two rows (the backup and upgrade benches': one run so far)
    found = {t.header: t for text in PAGES.values() for t in figures.tables(text)}
    assert all(h in found and len(found[h].rows) >= (1 if h in (figures.BACKUP_HEADER, figures.UPGRADE_HEADER) else 2) for h in checked)


@pytest.mark.parametrize("old, new, words", [
    ("| 9.1 / 10.3 | 9.1 / 10.3 | 26.8 |", "| 9.1 / 20.3 | 9.1 / 10.3 | 26.8 |", ["stale connections", "'9.1 / 20.3'", "'9.1 / 10.3'"]),
    ("| 6.4 s | 1.16 s | 5.5x |", "| 6.40 s | 1.16 s | 5.5x |", ["no-op", "'6.40 s'"]),
    ("| 0.92 ms | 1040 writes/s |", "| 0.92 ms | 1104 writes/s |", ["durability", "'1104 writes/s'"]),
    ("| 0 of 595 |", "| 0 of 594 |", ["failover", "'0 of 594'"]),
    ("| 4.3 s | 1 of 258 |", "| 4.0 s | 1 of 258 |", ["failover", "'4.0 s'"]),
    ("| | deployed | 0.7 s |", "| | deployed (galera_suspect_timeout 5) | 0.7 s |",
     ["failover", "'profile'", "the record says 'deployed'"]),
    ("took 123 s", "took 120 s", ["first deploy 120 s", "the record says 123 s"]),
    ("| 15.7 s (33 MB/s) | 2.6 s |", "| 12.7 s (33 MB/s) | 2.6 s |", ["backup table", "'12.7 s (33 MB/s)'"]),
])
def test_a_figure_the_records_do_not_give_is_caught(old, new, words):
    found = "\n".join(figures.problems(planted(old, new)))
    for w in words:
        assert w in found, found


def test_a_row_or_a_table_without_its_record_is_caught():
    row = "| 2 | 0.70 ms | 1288 writes/s | 2306 writes/s |"
    extra = planted(row, row + "\n| 0 | 0.50 ms | 1900 writes/s | 3000 writes/s |")
    assert any("docs/failover.md: the durability table has 3 rows, the records give 2" in p
               for p in figures.problems(extra))
    table = "\n\n| drill | took |\n|---|---|\n| partition | 4.2 s |\n"
    for page in ("README.md", "docs/operations.md"):  # in any page, the README too
        found = figures.problems({**PAGES, page: PAGES[page] + table})
        assert any(p.startswith(page) and "| drill | took |" in p and "no record" in p for p in found), found


def test_a_figure_table_gone_or_moved_is_followed():
    # gone from every page: caught
    header = "| fault | profile | keep-alive HTTP"
    text = PAGES["docs/failover.md"]
    gone = {**PAGES, "docs/failover.md": text.replace(header, "| fault | profile | kept-alive HTTP", 1)}
    assert any("no stale connections table" in p for p in figures.problems(gone))
    # moved to another page: checked there, its timeline links relative to that page
    start = text.index("| fault | profile | VIP moved |")
    end = text.index("\n\n", start)
    table = text[start:end]
    moved = {**PAGES, "docs/failover.md": text[:start] + text[end:], "README.md": PAGES["README.md"] + "\n" + table + "\n"}
    found = figures.problems(moved)
    assert any(p.startswith("README.md line") and "'timeline'" in p and "docs/bench-failover/haproxy-stopped.svg" in p
               for p in found), found
    fixed = {**moved, "README.md": figures.write(moved["README.md"], "README.md")}
    assert figures.problems(fixed) == []


def test_a_record_changed_is_caught(monkeypatch):
    runs = figures.failover_runs()
    changed = copy.deepcopy(runs)
    changed[3]["db_outage"] = 19.0  # holder power cut, deployed: 3.7 s recorded
    monkeypatch.setattr(figures, "failover_runs", lambda: changed)
    assert any(p.startswith("docs/failover.md line") and "failed-write window" in p and "'19.0 s'" in p
               for p in figures.problems(PAGES))


def test_rows_are_told_apart_by_the_configuration_they_ran_under():
    runs = figures.failover_runs()
    labels = figures.profile_labels(runs)
    by = {(r["slug"], r["profile"]): labels[i] for i, r in enumerate(runs)}
    # every anchors run had the same settings, and so had every deployed run (one bench run, 2026-12-07)
    assert by[("haproxy-stopped", "anchors")] == "anchors"
    assert {by[(r["slug"], "deployed")] for r in runs if r["profile"] == "deployed"} == {"deployed"}
    # a deployed run under other settings: each group named by the settings that differ, only those
    i = next(i for i, r in enumerate(runs) if (r["slug"], r["profile"]) == ("maintenance", "deployed"))
    other = [dict(r, config={**r["config"], "galera_suspect_timeout": 5, "mariadb_connect_timeout": "500ms"})
             if j == i else r for j, r in enumerate(runs)]
    labels = figures.profile_labels(other)
    assert labels[i] == "deployed (galera_suspect_timeout 5, mariadb_connect_timeout 500ms)"
    j = next(j for j, r in enumerate(runs) if (r["slug"], r["profile"]) == ("writer-cut-off", "deployed"))
    assert labels[j] == "deployed (galera_suspect_timeout 3, mariadb_connect_timeout 1500ms)"


def test_a_failover_run_without_its_configuration_is_refused(tmp_path, monkeypatch):
    recs = json.loads((figures.FAILOVER_DIR / "records.json").read_text())
    (tmp_path / "records.json").write_text(json.dumps(recs))
    monkeypatch.setattr(figures, "FAILOVER_DIR", tmp_path)  # no configs.json there
    with pytest.raises(ValueError, match=r"haproxy-stopped \(anchors, 2026-11-27 12:38 UTC\) has no configuration"):
        figures.failover_runs()
    recs["haproxy-stopped"]["runs"][0]["figures"]["config"] = {"x": 1}  # the bench's own record
    (tmp_path / "records.json").write_text(json.dumps(recs))
    with pytest.raises(ValueError, match=r"holder-power-cut \(anchors"):  # the next one without
        figures.failover_runs()


def test_recovered_records_say_where_they_come_from():
    for name in ("deploy", "durability"):
        for r in records.load(name):
            assert r["source"] == "bench" or ("recorded from commit" in r["source"] and "not re-run" in r["source"])
            assert r["config"] and r["figures"] and r["at"] and len(r["commit"].split("+")[0]) == 40
    configs = json.loads((figures.FAILOVER_DIR / "configs.json").read_text())
    assert "not re-run" in configs["source"] and all(len(r["commit"]) == 40 for r in configs["runs"])


def test_the_failover_bench_keeps_each_runs_configuration():
    anchors = failover.run_config(failover.profile_data("anchors", {}))
    deployed = failover.run_config(failover.profile_data("deployed", {"sysctl": {"net.ipv4.tcp_retries2": 8}}))
    assert anchors["mariadb_connect_timeout"] == "10s" and anchors["haproxy_timeouts"]["connect"] == "10s"
    assert anchors["haproxy_timeouts"]["client"] == failover.DEFAULTS["haproxy_timeouts"]["client"]
    assert deployed["mariadb_connect_timeout"] == failover.DEFAULTS["mariadb_connect_timeout"]
    assert deployed["sysctl"]["net.ipv4.tcp_retries2"] == 8 and deployed["stale_cap_s"] == failover.STALE_CAP
    # the record keeps it (figures["config"]) and reads it back
    result = {"slug": "haproxy-stopped", "fault": "f", "vip_moved": 1.0, "requests": [], "config": deployed, "x": 1}
    back = failover.results_of(failover.records_of({"deployed": [result]}))
    assert back["deployed"][0]["config"] == deployed


def test_a_bench_record_is_appended_with_its_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "DOCS", tmp_path)
    records.append("durability", "2", {"sessions": 4}, {"median_ms": 0.7})
    path = records.append("durability", "1 (default)", {"sessions": 4}, {"median_ms": 0.9})
    runs = json.loads(path.read_text())
    assert path == tmp_path / "bench-durability" / "records.json"
    assert [r["label"] for r in runs] == ["2", "1 (default)"] and runs[1]["source"] == "bench"
    assert len(runs[1]["commit"].split("+")[0]) == 40 and runs[1]["at"].endswith("UTC")
