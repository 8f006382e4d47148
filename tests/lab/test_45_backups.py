"""Backups on the lab (issue 18; docs/operations.md "Backups"): the lab's inventory takes them on
node03 (the last controller) and copies them to node02.

(a) Under a writer through the VIP (a new connection per write, a ledger of acknowledged
    writes), a full backup then an incremental one, each through `backup.py` (make backup):
    no write fails; the incremental applies on the full (LSNs follow on); both carry this
    cluster's uuid and a position; the artifacts' sha256 match their manifests on node03 and
    on the copy on node02; node03 is Synced with wsrep_desync OFF afterwards.
(b) A backup is refused, with no change and no traceback, while a member is not Synced.
(c) A backup that fails (mariadb-backup cannot run) exits non-zero, leaves a manifest that
    says so and the earlier backups untouched, sets wsrep_desync OFF again, and the health
    report fails on it until the next good backup.
"""

from __future__ import annotations

import json
import time

import pytest

from lab import drills
from lab.clients import Session, Writer, drop
from lab.machines import exec_
from lab.waits import SessionClosed, log, wait_for

from config import backup as backup_config
from lab import sitemodel



def where() -> tuple[str, str, str]:
    """The backup node (node03: the last controller), its copy's (node02: the one before it)
    and the backup directory, as the site says (read once the lab exists)."""
    site = sitemodel.site()
    names = [c.name for c in site.controllers]
    return (backup_config.node(names, site.data), backup_config.copy_target(names, site.data).name,
            site.data["backup_dir"])


class WriterPerConnection(Writer):
    """The drills' Writer, with a new connection through the VIP for every write."""

    def run(self):
        while not self.stopping.is_set():
            session = None
            try:
                session = Session()
                self.step(session)
            except (SessionClosed, OSError, ValueError):
                self.failures += 1
            finally:
                drop(session, 0)


def sh(node: str, command: str, timeout: float = 60) -> str:
    run = exec_(node, ["bash", "-c", command], timeout=timeout)
    assert run.returncode == 0, f"{node}: {command}: {run.stdout}{run.stderr}"
    return run.stdout


def manifests(node: str | None = None) -> dict[str, dict]:
    node, _, directory = where() if node is None else (node, None, where()[2])
    # none yet (a fresh lab): the loop's last test fails, the listing is empty
    out = sh(node, f"for f in {directory}/*.manifest.json; do [ -e \"$f\" ] && cat \"$f\" && echo; done; true")
    found, at, decoder = [], 0, json.JSONDecoder()
    while out[at:].strip():
        at += len(out[at:]) - len(out[at:].lstrip())
        m, at = decoder.raw_decode(out, at)
        found.append(m)
    return {m["id"]: m for m in found}


def sha256(node: str, artifact: str) -> str:
    return sh(node, f"sha256sum {where()[2]}/{artifact} | cut -d' ' -f1").strip()


def take(kind: str = "full"):
    return drills.pyinfra("-y", "inventories/lab.py", "backup.py", "--data", f"kind={kind}", timeout=900)


def test_a_full_then_an_incremental_under_a_writer_fail_no_write(healthy):
    node, copy, directory = where()
    drills.prepare_writes("backups")
    writer = WriterPerConnection("backups", "w1")
    before = set(manifests())
    writer.start()
    try:
        time.sleep(3)
        started = time.monotonic()
        full = take("full")
        full_s = time.monotonic() - started
        assert full.returncode == 0, drills.run_excerpt(full.stdout)
        time.sleep(2)
        started = time.monotonic()
        incremental = take("incremental")
        incremental_s = time.monotonic() - started
        assert incremental.returncode == 0, drills.run_excerpt(incremental.stdout)
        time.sleep(2)
    finally:
        writer.stopping.set()
        writer.join(30)
    log(f"backups under a writer: full {full_s:.1f} s, incremental {incremental_s:.1f} s (pyinfra runs); "
        f"{len(writer.acked)} writes acknowledged, {writer.failures} failed")
    assert writer.failures == 0, f"{writer.failures} writes failed while the backups ran on {node}"
    assert len(writer.acked) > 20, "the writer barely wrote: the test proved nothing"
    new = [m for i, m in sorted(manifests().items()) if i not in before]
    assert [m["kind"] for m in new] == ["full", "incremental"], new
    f, i = new
    assert f["status"] == i["status"] == "ok", new
    assert i["parent"] == f["id"] and i["lsn"]["from"] == f["lsn"]["to"], new
    assert f"backup {f['id']}: full, " in full.stdout and "verified, " in full.stdout, full.stdout[-3000:]
    assert f"backup {i['id']}: incremental on {f['id']}, " in incremental.stdout, incremental.stdout[-3000:]
    assert f["verified"] is True and f["tables"], f
    cluster = drills.node_sql("node01", "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'").split()[-1]
    assert f["galera"]["uuid"] == i["galera"]["uuid"] == cluster and i["galera"]["seqno"] >= f["galera"]["seqno"] > 0
    for m in new:
        assert sha256(node, m["artifact"]) == m["sha256"], m["id"]
        assert sha256(copy, m["artifact"]) == m["sha256"], f"the copy of {m['id']} on {copy}"
        assert json.loads(sh(copy, f"cat {directory}/{m['id']}.manifest.json"))["sha256"] == m["sha256"]
    assert drills.wsrep(node)["wsrep_local_state_comment"] == "Synced"
    assert sh(node, "mysql -N -B -e \"SELECT @@wsrep_desync\"").strip() == "0"


def test_a_backup_waits_for_every_member(healthy):
    before = set(manifests())
    drills.systemctl("node02", "stop", "mariadb")
    try:
        wait_for("node02 out of the cluster", lambda: drills.wsrep("node01").get("wsrep_cluster_size") == "2", 60)
        run = take("full")
    finally:
        drills.systemctl("node02", "start", "mariadb", timeout=300)
    assert run.returncode != 0
    assert f"backup: no full backup on {where()[0]}:" in run.stdout and "node02" in run.stdout, drills.run_excerpt(run.stdout)
    assert "Traceback" not in run.stdout
    assert set(manifests()) == before, "a refused backup wrote something"


def test_a_failed_backup_is_said_keeps_the_others_and_fails_the_report(healthy):
    node = where()[0]
    before = manifests()
    assert before, "no earlier backup to keep (test (a) takes them)"
    sh(node, "chmod -x /usr/bin/mariadb-backup")
    try:
        run = take("full")
    finally:
        sh(node, "chmod +x /usr/bin/mariadb-backup")
    assert run.returncode != 0, drills.run_excerpt(run.stdout)
    after = manifests()
    failed = [m for i, m in after.items() if i not in before]
    assert len(failed) == 1 and failed[0]["status"] == "failed" and "mariadb-backup" in failed[0]["error"], failed
    for i, m in before.items():  # a failed one (an earlier run's) has no artifact: its manifest must stay
        assert after[i] == m and (not m["artifact"] or sha256(node, m["artifact"]) == m["sha256"]), \
            f"{i} changed by a failed backup"
    assert sh(node, "mysql -N -B -e \"SELECT @@wsrep_desync\"").strip() == "0", "left desynced"
    report = drills.verify_report()
    assert not report["ok"] and any(f.startswith(f"{node}: backup: the newest backup {failed[0]['id']} failed")
                                    for f in report["failures"]), report["failures"]
    again = take("full")
    assert again.returncode == 0, drills.run_excerpt(again.stdout)
    report = drills.verify_report()
    assert not any(": backup:" in f for f in report["failures"]), report["failures"]


def restore_run(*data: str):
    args = [a for d in data for a in ("--data", d)]
    return drills.pyinfra("-y", "inventories/lab.py", "restore.py", *args, timeout=1500)


def test_a_disaster_restore_after_drop_database_brings_the_backup_back(healthy):
    """(d) A database dropped (Galera replicates the DROP to every node): the backup's rows
    are back on every node, what was written after the backup is not, the checksums equal
    the manifest's, the cluster is healthy and the next deploy is a no-op. Refused while
    mariadb runs, and without a confirmation."""
    node = where()[0]
    nodes = [c.name for c in sitemodel.site().controllers]
    drills.sql("DROP DATABASE IF EXISTS restore_drill; CREATE DATABASE restore_drill")
    drills.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); "
               "INSERT INTO t SELECT seq, CONCAT('row ', seq) FROM seq_1_to_100", database="restore_drill")
    run = take("full")
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    ident = sh(node, f"cat {where()[2]}/chain").strip()
    assert manifests()[ident]["verified"] is True, manifests()[ident]
    drills.sql("INSERT INTO t SELECT seq, 'after' FROM seq_101_to_110", database="restore_drill")
    drills.sql("DROP DATABASE restore_drill")

    running = restore_run(f"backup={ident}", f"confirm={ident}")
    assert running.returncode != 0 and "Traceback" not in running.stdout
    assert "stop mariadb on every node first" in running.stdout, drills.run_excerpt(running.stdout)
    for n in reversed(nodes):
        drills.systemctl(n, "stop", "mariadb", timeout=300)
    unconfirmed = restore_run(f"backup={ident}")
    assert unconfirmed.returncode != 0 and "Traceback" not in unconfirmed.stdout
    assert f"confirm" in unconfirmed.stdout, drills.run_excerpt(unconfirmed.stdout)

    started = time.monotonic()
    run = restore_run(f"backup={ident}", f"confirm={ident}")
    took = time.monotonic() - started
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    log(f"disaster restore of {ident}: {took:.1f} s (pyinfra run: restore, bootstrap, {len(nodes) - 1} joins by SST)")
    for n in nodes:
        assert drills.wsrep(n)["wsrep_local_state_comment"] == "Synced", n
        rows = drills.node_sql(n, "SELECT COUNT(*), SUM(v = 'after') FROM restore_drill.t").split()
        assert rows == ["100", "0"], (n, rows)
        aside = sh(n, "ls -d /var/lib/mysql.before-restore-* | wc -l").strip()
        assert int(aside) >= 1, f"{n}: the datadir of before was not kept"
    compare = exec_(node, [backup_config.RESTORE, "--compare", ident], timeout=300)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    log(compare.stdout.strip().splitlines()[-1])
    again = drills.deploy()
    assert again.returncode == 0, drills.run_excerpt(again.stdout)
    assert drills.changed_operations(again.stdout) == [], again.stdout[-6000:]
    for n in nodes:  # the data of before, set aside by this test: not kept on the lab
        sh(n, "rm -rf /var/lib/mysql.before-restore-*")
