"""lab/health.py's reading of a run and a report (no lab): the blast radius, which controller's newest backup failed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.health import blast_radius, failed_backup  # noqa: E402

FAILED = "the newest backup 20261207T143019Z-incremental failed (manifest failed (exit 1)); see journalctl -u 'openstack-ha-backup@*'"


def report(**rows):
    return {"hosts": {node: [{"name": "galera", "status": "OK", "detail": "Synced"}, row] for node, row in rows.items()}}


def test_the_node_whose_newest_backup_failed():
    assert failed_backup(report(node01={"name": "backup", "status": "OK", "detail": ""},
                                node03={"name": "backup", "status": "FAIL", "detail": FAILED})) == "node03"


def test_no_backup_yet_or_a_warning_is_not_a_failed_backup():
    assert failed_backup(report(node03={"name": "backup", "status": "WARN", "detail": "no backup taken yet"})) is None
    assert failed_backup(report(node03={"name": "backup", "status": "FAIL", "detail": "no verified full backup for 30 h"})) is None
    assert failed_backup(report(node03={"name": "firewall", "status": "FAIL", "detail": FAILED})) is None
    assert failed_backup({}) is None


def failing(node: str, *others: str) -> dict:
    r = report(**{node: {"name": "backup", "status": "FAIL", "detail": FAILED}})
    r["failures"] = [f"{node}: backup: {FAILED}", *others]
    return r


def retakes(monkeypatch, *reports) -> list:
    """The full backups retake_failed_backup() asks for over `reports`, in one wait."""
    import subprocess
    import lab.health as health
    taken = []
    monkeypatch.setattr(health, "take_backup", lambda kind, timeout: taken.append((kind, timeout))
                        or subprocess.CompletedProcess([], 0, ""))
    retaken: list[str] = []
    for r in reports:
        health.retake_failed_backup(r, retaken, bound=100)
    return taken


def test_a_failed_backup_alone_is_retaken_once_as_a_full(monkeypatch):
    assert retakes(monkeypatch, failing("node03"), failing("node03")) == [("full", 100)]


def test_a_failed_backup_beside_another_failure_waits(monkeypatch):
    assert retakes(monkeypatch, failing("node03", "node01: galera: Donor/Desynced")) == []
    assert retakes(monkeypatch, report(node03={"name": "backup", "status": "OK", "detail": ""})) == []


def test_the_blast_radius_of_a_runs_output():
    out = ("--> Preflight: ok\n--> Blast radius, in the order the steps run:\n    1. node02: restart rabbitmq-server\n"
           "    2. node03: reload haproxy\n--> Starting operation: x\n")
    assert blast_radius(out) == ", in the order the steps run:\n    1. node02: restart rabbitmq-server\n    2. node03: reload haproxy\n"
    assert blast_radius("--> Blast radius: no service restarts or reloads\n--> Starting") == ": no service restarts or reloads\n"
    assert blast_radius("--> Preflight refused: x\n") == ""
