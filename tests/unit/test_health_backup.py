"""The backups in the health report: BackupManifests' process() on the lab's capture
(captures/backup/), and the `backup` row of the backup node: OK while the newest verified full
backup is within two schedule periods, WARN past two or before any is verified (the report stays
OK), FAIL past three, when the newest backup failed or failed its verification, or a manifest
is broken; no row elsewhere, nor without backup_enabled."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from healthkit import F, capture, healthy, lab_site, row

from health.backup import period
from health.checks import evaluate
from health.report import FAIL, OK, WARN

FULL, INCREMENTAL = "20261206T114641Z-full", "20261206T114647Z-incremental"
TAKEN = datetime(2026, 12, 6, 11, 46, 41, tzinfo=timezone.utc)


def test_the_fact_reads_the_manifests_and_the_schedule():
    got = capture("backup", "lab")
    assert got["error"] is None and got["broken"] == []
    assert got["elapses"] == ["2026-12-07T01:00:00+00:00", "2026-12-08T01:00:00+00:00"]
    assert [m["id"] for m in got["manifests"]] == [FULL, INCREMENTAL]
    full = got["manifests"][0]
    assert full["galera"] == {"uuid": "241eb0eb-f164-11f1-9886-723dcf1e1661", "seqno": 121948}
    assert got["manifests"][1]["parent"] == FULL


def test_a_broken_manifest_is_listed_with_why():
    out = ["=== elapse 2026-12-07 01:00:00", "=== elapse 2026-12-08 01:00:00", "=== manifest x.manifest.json",
           '{"format": 1, "id": "x"}', "=== end"]
    got = F.BackupManifests().process(out)
    assert got["manifests"] == [] and got["broken"] == ["x.manifest.json: broken backup manifest: kind missing"]


def test_a_listing_cut_short_is_an_error():
    assert F.BackupManifests().process(["=== elapse 2026-12-07 01:00:00", "=== manifest x.manifest.json", "{"])["error"]


def backup_fact(verified=True, status="ok", verified_full=True, **changes):
    fact = capture("backup", "lab")
    for m in fact["manifests"]:
        if m["kind"] == "full" and verified_full:
            m.update(verified=verified, verify_note="prepared a copy, 57 tables summed" if verified else "prepare failed")
    fact["manifests"][-1].update(status=status, **({"error": "mariadb-backup failed (exit 1)", "artifact": None,
                                                    "sha256": None} if status == "failed" else {}))
    fact.update(changes)
    return fact


def backup_row(fact, now, **data):
    site = lab_site()
    site.data.update({"backup_enabled": True, **data})
    results = healthy(site)
    results["node03"]["backup"] = fact
    report = evaluate(site, results, now=now)
    return report, row(report, "node03", "backup")


def test_a_recent_verified_full_is_ok():
    report, r = backup_row(backup_fact(), TAKEN + timedelta(hours=3))
    assert r.status == OK and r.detail == f"newest verified full {FULL}, 3 h 0 min ago; newest incremental 2 h 59 min ago"
    assert report.ok and report.warnings() == []


# (age of the newest verified full, what the row says of it, of the incremental taken 6 s later):
# hours and minutes under a day, days and hours from a day on, each at its edge.
AGES = [
    (timedelta(hours=3), "3 h 0 min", "2 h 59 min"),
    (timedelta(hours=23), "23 h 0 min", "22 h 59 min"),
    (timedelta(days=1), "1 d 0 h", "23 h 59 min"),
    (timedelta(days=1, seconds=5), "1 d 0 h", "23 h 59 min"),  # the incremental a second short of a day: still hours
    (timedelta(days=1, hours=1), "1 d 1 h", "1 d 0 h"),
    (timedelta(days=2, seconds=-1), "1 d 23 h", "1 d 23 h"),  # a second short of two days: 1 d, not 2
]


@pytest.mark.parametrize("age, full, incremental", AGES, ids=[a[1] for a in AGES])
def test_the_ages_it_says(age, full, incremental):
    r = backup_row(backup_fact(), TAKEN + age)[1]
    assert r.status == OK and r.detail == f"newest verified full {FULL}, {full} ago; newest incremental {incremental} ago"


def older_full(fact, verified):
    """`fact` with a full backup taken a day before its own full (verified or not)."""
    old = dict(fact["manifests"][0], id="20261205T114641Z-full", started="2026-12-05T11:46:41Z",
               finished="2026-12-05T11:46:42Z", artifact="20261205T114641Z-full.mbstream.gz", verified=verified,
               verify_note="prepared a copy, 57 tables summed" if verified else "prepare failed")
    return {**fact, "manifests": [old, *fact["manifests"]]}


def test_an_older_full_that_failed_its_verification_does_not_count_against_a_newer_verified_one():
    r = backup_row(older_full(backup_fact(), verified=False), TAKEN + timedelta(hours=3))[1]
    assert r.status == OK and r.detail.startswith(f"newest verified full {FULL}, 3 h 0 min ago"), r.detail


def test_the_newest_full_failing_its_verification_fails_though_an_older_one_passed():
    r = backup_row(older_full(backup_fact(verified=False), verified=True), TAKEN + timedelta(hours=3))[1]
    assert r.status == FAIL and r.detail == f"the newest full backup {FULL} failed its verification (prepare failed)"


def test_two_verified_fulls_the_age_is_the_newests():
    r = backup_row(older_full(backup_fact(), verified=True), TAKEN + timedelta(hours=3))[1]
    assert r.status == OK and r.detail.startswith(f"newest verified full {FULL}, 3 h 0 min ago"), r.detail


# (the calendar's elapses, the period): the first two count; none without two that follow on.
E1, E2, E3 = "2026-12-07T01:00:00+00:00", "2026-12-08T01:00:00+00:00", "2026-12-15T01:00:00+00:00"
PERIODS = [([], None), ([E1], None), ([E1, E1], None), ([E2, E1], None), ([E1, E2], timedelta(days=1)),
           ([E1, E2, E3], timedelta(days=1))]


@pytest.mark.parametrize("elapses, every", PERIODS, ids=[str(len(p[0])) + " " + str(p[1]) for p in PERIODS])
def test_the_schedules_period(elapses, every):
    assert period(elapses) == every


@pytest.mark.parametrize("days, status, said", [(1.9, OK, ""), (2, OK, ""), (2.1, WARN, "more than two schedules (2 d 0 h)"),
                                                (2.9, WARN, "more than two schedules (2 d 0 h)"),
                                                (3, WARN, "more than two schedules (2 d 0 h)"),
                                                (3.1, FAIL, "more than three schedules (3 d 0 h)")])
def test_its_age_is_judged_by_the_schedule(days, status, said):
    report, r = backup_row(backup_fact(), TAKEN + timedelta(days=days))
    assert r.status == status, r.detail
    assert said in r.detail
    assert report.ok == (status != FAIL)
    # a weekly schedule: the same age is fine
    weekly = backup_fact(elapses=["2026-12-07T01:00:00+00:00", "2026-12-14T01:00:00+00:00"])
    assert backup_row(weekly, TAKEN + timedelta(days=days))[1].status == OK


def test_the_newest_backup_failed_fails_with_its_step():
    report, r = backup_row(backup_fact(status="failed"), TAKEN + timedelta(hours=1))
    assert r.status == FAIL and f"the newest backup {INCREMENTAL} failed (mariadb-backup failed (exit 1))" in r.detail
    assert report.failures() == [f"node03: backup: {r.detail}"]


def test_a_full_that_failed_its_verification_fails():
    r = backup_row(backup_fact(verified=False), TAKEN + timedelta(hours=1))[1]
    assert r.status == FAIL and "failed its verification (prepare failed)" in r.detail


def test_before_any_verified_full_it_warns():
    r = backup_row(backup_fact(verified_full=False), TAKEN + timedelta(hours=1))[1]
    assert r.status == WARN and r.detail.startswith("2 backup(s), none verified yet")
    r = backup_row(backup_fact(manifests=[]), TAKEN)[1]
    assert r.status == WARN and r.detail.startswith("no backup taken yet") and "make backup" in r.detail


def test_a_broken_manifest_or_an_unreadable_directory_fails():
    r = backup_row(backup_fact(broken=["x.manifest.json: broken backup manifest: kind missing"]), TAKEN)[1]
    assert r.status == FAIL and r.detail.startswith("x.manifest.json: broken")
    two = ["a.manifest.json: broken backup manifest: kind missing", "b.manifest.json: broken backup manifest: id missing"]
    r = backup_row(backup_fact(broken=two), TAKEN)[1]
    assert r.status == FAIL and r.detail.startswith("a.manifest.json: broken"), r.detail  # the first, as listed
    r = backup_row({**backup_fact(), "error": "no answer from the host"}, TAKEN)[1]
    assert r.status == FAIL and "no answer from the host" in r.detail
    r = backup_row(backup_fact(elapses=[]), TAKEN)[1]
    assert r.status == FAIL and "does not elapse twice" in r.detail


def test_only_the_backup_node_has_the_row_and_only_with_backups():
    report, _ = backup_row(backup_fact(), TAKEN)
    assert [n for n in report.hosts if any(c.name == "backup" for c in report.hosts[n])] == ["node03"]
    site = lab_site()
    results = healthy(site)
    results["node03"]["backup"] = backup_fact()
    report = evaluate(site, results, now=TAKEN)
    assert not any(c.name == "backup" for c in report.hosts["node03"])
