"""The restore rehearsal on the lab (issue 18 item 4's done-when; docs/operations.md "Backups"):
a full backup taken under a writer through the VIP (a new connection per write, a ledger of
each write's begin and acknowledgement), then `make restore-rehearsal` onto fresh lab nodes
with other names and addresses (lab.names.REHEARSAL_NODES: node08, node09; never controllers):
node08 bootstrapped from the prepared backup, node09 joining it by SST.

(a) Every write acknowledged before the backup began is on every restored node, none that
    began after it ended; the checksums equal the manifest's on every restored node (the
    rehearsal's last line, and CHECKSUM TABLE asked on each node here); the controllers' data
    untouched (their ledger table still holds every acknowledged write, Synced).
(b) A rehearsal host that is a controller is refused by preflight, naming host, key and fix,
    before anything connects.

The rehearsal nodes are ALWAYS removed at the end (finally): the lab is shared, and left as
found. On the lab (2026-12-06): the rehearsal took 27.9 s (two MariaDB installs through the
warm apt proxy, a prepare, a bootstrap, one SST), the test 78 s: 18 tables, 145908 rows compared
on each of node08 and node09, the checksums match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lab import drills, lifecycle, sitemodel
from lab.clients import Session, WRITES_DB, drop, write
from lab.names import REHEARSAL_NODES as _NODES, address
from lab.waits import SessionClosed, log

from tests.lab.test_45_backups import WriterPerConnection, manifests, take, where

TABLE = "rehearsal"
REHEARSAL_TIMEOUT = 1500  # s: two MariaDB installs, a prepare, a bootstrap and an SST


class LedgerWriter(WriterPerConnection):
    """A new connection through the VIP per write; the ledger holds, per write, when it began
    and, once acknowledged, its id and when: (began, acked or None, id or None)."""

    def __init__(self, table: str, name: str):
        super().__init__(table, name)
        self.ledger: list[tuple[float, float | None, int | None]] = []

    def run(self):
        while not self.stopping.is_set():
            session, began = None, time.monotonic()
            try:
                session = Session()
                _, ident = write(session, self.table, self.client, timeout=5)
                self.ledger.append((began, time.monotonic(), ident))
                self.acked.append(ident)
            except (SessionClosed, OSError, ValueError):
                self.ledger.append((began, None, None))
                self.failures += 1
            finally:
                drop(session, 0)


def rehearse(report: Path, *data: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """What `make restore-rehearsal INVENTORY=inventories/lab.py` runs after its preflight (make
    itself is not run: its venv target could reinstall the venv); the verdict in `report`."""
    args = [a for d in (*data, f"report={report}") for a in ("--data", d)]
    return drills.pyinfra("-y", "inventories/rehearsal.py", "rehearsal.py", *args, timeout=REHEARSAL_TIMEOUT,
                          env={"HA_REHEARSAL_SITE": "inventories/lab.py", **(env or {})})


def ids_on(node: str) -> set[int]:
    out = drills.node_sql(node, f"SELECT id FROM {WRITES_DB}.{TABLE}", timeout=60)
    return {int(x) for x in out.split()}


def checksum(node: str) -> str:
    return drills.node_sql(node, f"CHECKSUM TABLE {WRITES_DB}.{TABLE}").split()[-1]


def remove_rehearsal_nodes() -> None:
    """Each rehearsal node deleted (disk included), whatever state it is in; the lab as found."""
    for n in _NODES:
        if n in lifecycle.node_names() or any(r["name"] == n and r["state"] != "absent" for r in lifecycle.status()):
            try:
                lifecycle.remove(n)
            except Exception as exc:  # noqa: BLE001 - said, the next one still removed
                log(f"removing {n}: {exc}")
    left = [n for n in _NODES if n in lifecycle.node_names()]
    assert not left, f"rehearsal nodes left on the shared lab: {left}"


def test_a_rehearsal_onto_fresh_nodes_holds_every_write_before_the_backup_and_none_after(healthy, tmp_path):
    controllers = [c.name for c in sitemodel.site().controllers]
    assert not set(_NODES) & set(controllers), "a rehearsal node is a controller of the lab"
    remove_rehearsal_nodes()  # an interrupted earlier run's, if any: fresh nodes
    node = where()[0]
    drills.prepare_writes(TABLE)
    writer = LedgerWriter(TABLE, "r1")
    before = set(manifests())
    try:
        lifecycle.add(list(_NODES))
        writer.start()
        try:
            time.sleep(3)
            began = time.monotonic()
            full = take("full")
            ended = time.monotonic()
            assert full.returncode == 0, drills.run_excerpt(full.stdout)
            time.sleep(3)
        finally:
            writer.stopping.set()
            writer.join(30)
        assert writer.failures == 0, f"{writer.failures} writes failed while {node} took the backup"
        new = [m for i, m in sorted(manifests().items()) if i not in before and m["kind"] == "full"]
        assert len(new) == 1 and new[0]["verified"] is True, new
        ident = new[0]["id"]
        # the bounds are the pyinfra run's: acknowledged before it began is before the backup
        # began; begun after it ended is after the backup ended
        acked_before = {i for b, a, i in writer.ledger if a is not None and a < began}
        begun_after = {i for b, a, i in writer.ledger if i is not None and b > ended}
        assert len(acked_before) > 5 and begun_after, "the writer barely wrote around the backup: nothing proven"

        started = time.monotonic()
        report = tmp_path / "restore-rehearsal.txt"
        run = rehearse(report, f"backup={ident}")
        took = time.monotonic() - started
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        last = report.read_text().strip().splitlines()[-1]
        assert last.startswith(f"restore-rehearsal of {ident}: compared ") and last.endswith(
            f"on each of {len(_NODES)} restored host(s) ({', '.join(_NODES)}) against the manifest: the checksums match"), last
        log(f"rehearsal of {ident}: {took:.1f} s (two installs, restore, bootstrap, one SST); {last}")

        manifest = manifests()[ident]
        want = manifest["tables"][f"{WRITES_DB}.{TABLE}"]
        for n in _NODES:
            st = drills.wsrep(n)
            assert st["wsrep_local_state_comment"] == "Synced" and st["wsrep_cluster_size"] == str(len(_NODES)), (n, st)
            uuid = drills.node_sql(n, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'").split()[-1]
            assert uuid == manifest["galera"]["uuid"], (n, uuid)
            got = ids_on(n)
            assert acked_before <= got, f"{n}: {len(acked_before - got)} writes acknowledged before the backup missing"
            assert not got & begun_after, f"{n}: {len(got & begun_after)} writes begun after the backup are there"
            assert len(got) == want["rows"] and checksum(n) == want["checksum"], (n, len(got), want)
        # the controllers: only read (every acknowledged write still there, still Synced)
        for c in controllers:
            assert {i for _, a, i in writer.ledger if a is not None} <= ids_on(c), c
            assert drills.wsrep(c)["wsrep_local_state_comment"] == "Synced", c
    finally:
        remove_rehearsal_nodes()


def test_a_rehearsal_host_that_is_a_controller_is_refused_before_any_change(tmp_path):
    """make's preflight refuses it before anything connects; the entry itself refuses it too,
    before any operation (nothing changed on node02)."""
    env = {"HA_LAB_DATA": json.dumps({"backup_rehearsal_hosts": {"node02": address("node02")}})}
    pre = subprocess.run([sys.executable, "-m", "config.preflight", "inventories/lab.py"], cwd=drills.ROOT,
                         env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=120)
    run = rehearse(tmp_path / "r.txt", "backup=latest", env=env)
    for said in (pre.stdout, run.stdout):
        assert "Traceback" not in said
        assert "backup_rehearsal_hosts.node02" in said and "controller node02" in said, said[-3000:]
        assert "name a host that is not a controller" in said, said[-3000:]
    assert pre.returncode != 0 and run.returncode != 0
    assert "no host was changed" in run.stdout and not (tmp_path / "r.txt").exists(), run.stdout[-3000:]
