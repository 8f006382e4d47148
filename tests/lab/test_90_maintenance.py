"""Maintenance of a controller on the running lab (docs/operations.md "Maintenance"), under steady HTTP
and database load through the VIP.

node01 is taken: the VIP holder (placed there first) and the database writer by order, the
hardest case. Out: the VIP leaves at once, its servers go to maint on every HAProxy, the
writes move to node02, RabbitMQ stops. While out: a reboot of node01 and a deploy that
reloads every HAProxy, and it stays out (VIP away, servers in MAINT everywhere, RabbitMQ
stopped, the report OK with node01 "in maintenance"). Back: RabbitMQ a member again, the
servers ready, the writes back on node01, one writer at a time throughout.

The clients behave as OpenStack's do: a database client pings its pooled connection before
use and reconnects when it was closed (oslo.db's pool pre-ping), and a write whose connection
was cut before its answer is checked and sent once more on a new one (oslo.db's
wrap_db_retry on a disconnect; the row carries a unique tag, so it is never written twice);
an HTTP client sends a GET once more on a new connection after a connection error
(keystoneauth's connect retries). A request or write counts as failed only when that second
try fails too; the first tries that failed are logged as figures.
"""

from __future__ import annotations

import subprocess
import threading
import time

import lab
from config.files import MAINTENANCE_FILE
from lab import drills, sitemodel
from lab.clients import Gets
from lab.drills import Session, SessionClosed, log

NODE = "node01"
TABLE = "maintenance"
ACTION_TIMEOUT = 600


def maintenance(action: str, node: str = NODE) -> subprocess.CompletedProcess:
    return drills.pyinfra("-y", "inventories/lab.py", "maintenance.py", "--data", f"node={node}",
                          "--data", f"action={action}", timeout=ACTION_TIMEOUT)


class PooledWriter(threading.Thread):
    """Tagged INSERTs through the VIP every 20 ms in a pooled session: pinged before use
    (reconnected when closed: `reconnects`), a write cut before its answer checked by its tag
    and sent once more on a new session (`retried`); `failed`: not acknowledged after that.
    `acked`: the tags acknowledged; `nodes`: (time, node) of each acknowledged write."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.name_, self.seq = name, 0
        self.acked, self.nodes = [], []
        self.reconnects = self.retried = self.failed = 0
        self.stopping = threading.Event()
        self.session = None

    def _session(self) -> Session:
        if self.session is not None:
            try:
                self.session.query("SELECT 1", timeout=5)
                return self.session
            except SessionClosed:
                self.session.close()
                self.session = None
                self.reconnects += 1
        self.session = Session()
        return self.session

    def _write(self, tag: str, check: bool) -> str:
        s = self._session()
        if check and s.query(f"SELECT COUNT(*) FROM {drills.WRITES_DB}.{TABLE} WHERE client = '{tag}'", timeout=5) != "0":
            return s.query("SELECT @@hostname", timeout=5)  # it was committed before the cut
        out = s.query(f"INSERT INTO {drills.WRITES_DB}.{TABLE} (node, client) VALUES (@@hostname, '{tag}'); "
                      "SELECT @@hostname", timeout=5)
        return out

    def run(self):
        while not self.stopping.is_set():
            self.seq += 1
            tag = f"{self.name_}-{self.seq}"
            for attempt in (1, 2):
                try:
                    node = self._write(tag, check=attempt == 2)
                    self.acked.append(tag)
                    self.nodes.append((time.monotonic(), node))
                    break
                except (SessionClosed, OSError, ValueError):
                    if self.session is not None:
                        self.session.close()
                    self.session = None
                    if attempt == 1:
                        self.retried += 1
                    else:
                        self.failed += 1
            self.stopping.wait(0.02)
        if self.session is not None:
            self.session.close()


def marker(node: str) -> str:
    return lab.exec_(node, ["sh", "-c", f"cat {MAINTENANCE_FILE} 2>/dev/null || true"], timeout=15).stdout.strip()


def rabbit_active(node: str) -> str:
    return drills.systemctl(node, "is-active", "rabbitmq-server").stdout.strip()


def assert_out(node: str) -> dict:
    """node is out everywhere: the VIP elsewhere, its servers in MAINT on every running HAProxy,
    RabbitMQ stopped, the report OK with it in maintenance."""
    assert marker(node) == "1"
    assert drills.holder() not in (None, node), drills.holders()
    for n in drills.running():
        for listener in ("mariadb", "keystone_internal"):
            status = drills.haproxy_servers(n, listener).get(node, "")
            assert status.startswith("MAINT"), f"{n}'s HAProxy: {listener}/{node} {status}"
    assert rabbit_active(node) != "active"
    report, _ = drills.wait_healthy(300)
    rows = {r["name"]: r["status"] for r in report["hosts"][node]}
    assert rows.get("maintenance") == "info", report["hosts"][node]
    return report


def test_a_controller_out_and_back_under_load_with_a_reboot_while_out(healthy):
    drills.place_vip(NODE)
    assert drills.db_node() == NODE
    drills.prepare_writes(TABLE)
    writer, requests = PooledWriter("maint"), Gets()
    writer.start()
    requests.start()
    t = {}
    try:
        t0 = time.monotonic()
        run = maintenance("out")
        t["out"] = time.monotonic() - t0
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert drills.db_node() != NODE
        assert_out(NODE)
        log(f"{NODE} out in {t['out']:.1f}s; VIP on {drills.holder()}, writes on {drills.db_node()}")

        # a second `out` converges and changes nothing that matters
        run = maintenance("out")
        assert run.returncode == 0, drills.run_excerpt(run.stdout)

        # a reboot while out: it comes back still out (marker on disk, RabbitMQ disabled, its own
        # HAProxy replays maint at start, the others kept it)
        lab.stop(NODE)
        drills.power_on(NODE)
        drills.wait_for(f"{NODE}'s mariadb Synced again", lambda: drills.wsrep(NODE).get("wsrep_local_state") == "4", 300, 2)
        assert_out(NODE)
        log(f"{NODE} rebooted while out: still out")

        # a deploy that reloads every HAProxy (a reload forgets runtime states): still out
        run = drills.deploy(data={"haproxy_maxconn": sitemodel.data("haproxy_maxconn") + 1})
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert "reload haproxy" in run.stdout and f"keep {NODE} in maintenance" in run.stdout
        assert_out(NODE)
        run = drills.deploy()  # the site's own data again
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert_out(NODE)

        holder_before = drills.holder()
        t0 = time.monotonic()
        run = maintenance("back")
        t["back"] = time.monotonic() - t0
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert marker(NODE) == "0"
        assert drills.db_node() == NODE  # the writer order restored
        assert drills.holder() == holder_before  # nopreempt: the VIP does not move back by itself
        report, _ = drills.wait_healthy(300)
        assert drills.rabbit_running(report) == {f"rabbit@{n}" for n in drills.nodes()}
        assert all(r["name"] != "maintenance" for r in report["hosts"][NODE])
        time.sleep(3)  # load on the restored writer
    finally:
        writer.stopping.set()
        requests.stopping.set()
        writer.join(30)
        requests.join(30)
        if marker(NODE) == "1":  # the lab as found, also after a failure
            log(f"bringing {NODE} back after a failure: {maintenance('back').returncode}")

    stored = drills.sql(f"SELECT client FROM {drills.WRITES_DB}.{TABLE}").split()
    missing = set(writer.acked) - set(stored)
    twice = len(stored) - len(set(stored))
    switches = sum(1 for (_, a), (_, b) in zip(writer.nodes, writer.nodes[1:]) if a != b)
    log(f"out {t.get('out', 0):.1f}s, back {t.get('back', 0):.1f}s; writes: {len(writer.acked)} acknowledged, "
        f"{writer.reconnects} pooled reconnects, {writer.retried} retried, {writer.failed} failed, {len(missing)} missing, "
        f"{twice} twice, writer switches {switches}; HTTP: {requests.ok} ok, {requests.retried} retried, "
        f"{requests.failed} failed")
    assert not missing and twice == 0
    assert writer.failed == 0 and requests.failed == 0
    # one writer at a time: node01, then the next, then node01 again (never interleaved)
    assert switches <= 2, writer.nodes
    assert writer.acked and requests.ok
