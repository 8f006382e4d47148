"""The backup row: `backup`, on backup_node only, with backup_enabled.

Fact used: `backup` (facts.backup.BackupManifests: the backup directory's manifests and the
next two elapses of the full backup's calendar, whose difference is the schedule's period).
The age that counts is the newest verified full backup's (a backup nobody restored is not yet
one): OK within two periods, WARN past two (the report stays OK: look at the backup service's
journal), FAIL past three, and FAIL when the newest backup failed (it says which step) or a
manifest is broken. Before the first full backup has been verified: WARN, saying what there is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from config.backup import node
from config.site import Site
from facts.backup import manifests_of
from health.report import FAIL, OK, WARN, Check, problem

JOURNAL = "journalctl -u 'openstack-ha-backup@*'"


def _ago(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    return f"{s // 86400} d {s % 86400 // 3600} h" if s >= 86400 else f"{s // 3600} h {s % 3600 // 60} min"


def period(elapses: list[str]) -> timedelta | None:
    """The full backup's schedule period: between the calendar's next two elapses."""
    if len(elapses) < 2:
        return None
    a, b = (datetime.fromisoformat(e) for e in elapses[:2])
    return b - a if b > a else None


def backup_rows(site: Site, name: str, facts: dict, now: datetime) -> list[Check]:
    """`backup`: the newest verified full backup is recent and the newest backup did not fail."""
    d = site.data
    if not d["backup_enabled"] or name != node([c.name for c in site.controllers], d):
        return []
    if not isinstance(facts.get("backup"), dict):
        return [Check("backup", FAIL, problem(facts, "backup"))]
    if problem(facts, "backup"):
        return [Check("backup", FAIL, f"cannot read the backups in {d['backup_dir']}: {problem(facts, 'backup')}")]
    fact = facts["backup"]
    if fact["broken"]:
        return [Check("backup", FAIL, f"{fact['broken'][0]} (a restore cannot use it: move it away or fix it)")]
    every = period(fact["elapses"])
    if every is None:
        return [Check("backup", FAIL, f"backup_full_calendar {d['backup_full_calendar']!r} does not elapse twice here "
                                      "(systemd-analyze calendar): no schedule to judge the backups' age by")]
    backups = sorted(manifests_of(fact), key=lambda m: m.started)
    if backups and backups[-1].status != "ok":
        last = backups[-1]
        return [Check("backup", FAIL, f"the newest backup {last.id} failed ({last.error}); see {JOURNAL}")]
    fulls = [m for m in backups if m.kind == "full" and m.status == "ok"]
    if fulls and fulls[-1].verified is False:
        return [Check("backup", FAIL, f"the newest full backup {fulls[-1].id} failed its verification ({fulls[-1].verify_note})")]
    verified = [m for m in fulls if m.verified]
    newest = f"; newest {backups[-1].kind} {_ago(now - backups[-1].started)} ago" if backups else ""
    if not verified:
        what = f"{len(backups)} backup(s), none verified yet" if backups else "no backup taken yet"
        return [Check("backup", WARN, f"{what}; the full backup runs at {d['backup_full_calendar']}, or now: make backup")]
    age = now - verified[-1].started
    said = f"newest verified full {verified[-1].id}, {_ago(age)} ago{newest}"
    if age > 3 * every:
        return [Check("backup", FAIL, f"{said}: more than three schedules ({_ago(3 * every)}); see {JOURNAL}")]
    if age > 2 * every:
        return [Check("backup", WARN, f"{said}: more than two schedules ({_ago(2 * every)}); see {JOURNAL}")]
    return [Check("backup", OK, said)]
