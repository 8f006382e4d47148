"""TLS between the controllers on the lab, on and off again (issue 24 item 4: "offer TLS for Galera
and RabbitMQ as a switch, lab-tested on and off"; docs/security.md "TLS between the controllers").

Part of make test since stop 18 (169 s in its full run): the lab's word on what
tests/unit/test_peer_tls.py could only assume (marked LAB below).

1. RabbitMQ on (HA_LAB_DATA {"rabbitmq_tls": true}; inventories/lab.py issues each node's
   certificate from the lab's CA): one deploy stops every broker and starts them together (the
   blast radius says so), the cluster is whole, 25672 answers TLS with the node's certificate, and
   the RabbitmqTls fact reads "tls". LAB: inet_dist_use_interface still binds the node address
   under inet_tls; the CLI (RABBITMQ_CTL_ERL_ARGS) reaches the node.
2. Galera on, on the running cluster: refused before any change, naming the whole-cluster stop.
   Then the fix as the refusal words it: mariadb stopped on every controller, the writer last; one
   deploy bootstraps the most advanced with TLS and the others join; 4567 answers TLS.
   LAB: `socket.ssl_cert = <path>` appears in wsrep_provider_options (the GaleraTls fact).
3. A node joins by SST over TLS: node03's datadir state set aside (HA_GALERA_REPAIR's way), it
   rejoins by a full state transfer; the donor's journal shows the SST over socat with openssl
   (LAB: `[sst] ssl-mode = VERIFY_CA` accepted by wsrep_sst_mariabackup 10.11).
4. Off again: the same two operations the other way; 4567 and 25672 answer without TLS, the
   health report is clean. Always in `finally`, so the shared lab is left as it was found.
"""

from __future__ import annotations

import subprocess

import pytest

import lab
from config import peer_tls
from config.defaults import DIST_PORT_OFFSET, GALERA_PORT
from lab import drills, sitemodel
from lab.drills import log

NODES = ["node01", "node02", "node03"]
WRITER = NODES[0]
ON = {"galera_tls": True, "rabbitmq_tls": True}
RABBIT_ON = {"rabbitmq_tls": True}


def dist_port() -> int:
    """RabbitMQ's Erlang distribution port (read when a test runs: no lab at collection)."""
    return sitemodel.data("rabbitmq_port") + DIST_PORT_OFFSET


def handshake(node: str, port: int) -> subprocess.CompletedProcess:
    """`openssl s_client` from node01 to `node`:`port`, with node01's certificate (the servers ask
    for one) and the lab's CA; its output says whether TLS was spoken and what was presented."""
    files = peer_tls.paths("galera" if port == GALERA_PORT else "rabbitmq")
    cmd = (f"timeout 10 openssl s_client -connect {lab.address(node)}:{port} -CAfile {files['ca']} "
           f"-cert {files['cert']} -key {files['key']} "
           "-verify_return_error -brief </dev/null 2>&1 | tr -cd '[:print:]\\n'")  # the peer's first bytes may follow: text only
    return lab.exec_(WRITER, cmd, timeout=30)


def speaks_tls(node: str, port: int) -> bool:
    out = handshake(node, port).stdout
    return "Protocol version: TLSv1.3" in out or "Protocol version: TLSv1.2" in out


def reading(node: str, fact: str) -> str:
    """What the deploy's fact reads on `node` (its own shell, run there)."""
    from facts.galera import GaleraTls
    from facts.rabbitmq import RabbitmqTls

    cls = {"galera": GaleraTls, "rabbitmq": RabbitmqTls}[fact]
    out = lab.exec_(node, cls().command(), timeout=60).stdout
    return cls().process(out.splitlines())[fact]


def deploy_ok(data: dict) -> str:
    run = drills.deploy(data=data)
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    return run.stdout


def stop_galera_writer_last() -> None:
    for n in [*reversed(NODES[1:]), WRITER]:
        assert lab.exec_(n, "timeout 300 systemctl stop mariadb", timeout=330).returncode == 0, n


def assert_healthy() -> None:
    report, waited = drills.wait_healthy(300)
    assert report["ok"], report.get("failures")
    assert drills.galera_synced_count(report) == len(NODES)
    assert drills.rabbit_running(report) == {f"rabbit@{n}" for n in NODES}


@pytest.mark.long  # 173 s in make test's run of 2026-12-07 (68 min on CI): make test-long
def test_peer_tls_on_then_off(healthy):  # the conftest fixture: a healthy lab first
    try:
        # 1. RabbitMQ: every broker stops, they start together, on TLS
        out = deploy_ok(RABBIT_ON)
        assert "the Erlang distribution switches TLS" in out, drills.run_excerpt(out)
        assert_healthy()
        assert all(reading(n, "rabbitmq") == "tls" for n in NODES)
        assert all(speaks_tls(n, dist_port()) for n in NODES)
        listen = lab.exec_("node02", f"ss -Hltn 'sport = :{dist_port()}'").stdout
        local = [line.split()[3] for line in listen.splitlines() if line.strip()]  # the listening address, not the peer column
        assert local == [f"{lab.address('node02')}:{dist_port()}"], listen
        assert drills.changed_operations(deploy_ok(RABBIT_ON)) == []  # the next run switches nothing

        # 2. Galera on a running cluster: refused, nothing changed; then the fix it names
        run = drills.deploy(data=ON)
        assert run.returncode != 0 and "galera: galera_tls is on and mariadb runs without TLS" in run.stdout
        assert "Traceback" not in run.stdout
        assert all(reading(n, "galera") == "plain" for n in NODES)
        stop_galera_writer_last()
        deploy_ok(ON)
        assert_healthy()
        assert all(reading(n, "galera") == "tls" for n in NODES)
        assert all(speaks_tls(n, GALERA_PORT) for n in NODES)

        # 3. node03 rejoins by a full state transfer, over TLS
        lab.exec_("node03", "systemctl stop mariadb; d=/var/lib/openstack-ha/sst-test; mkdir -p $d; "
                            "mv -f /var/lib/mysql/grastate.dat /var/lib/mysql/galera.cache $d/ 2>/dev/null; true", timeout=330)
        since = lab.exec_("node02", "date +%s").stdout.strip()
        assert lab.exec_("node03", "timeout 600 systemctl start mariadb", timeout=630).returncode == 0
        assert_healthy()
        journals = "".join(lab.exec_(n, f"journalctl -u mariadb --since @{since} --no-pager", timeout=60).stdout
                           for n in NODES[:2])
        assert "SST" in journals and ("ssl" in journals.lower() or "openssl" in journals.lower()), journals[-3000:]
        log("peer TLS: on (rabbitmq together, galera by a whole-cluster stop), node03 rejoined by SST over TLS")
    finally:
        # 4. off again, the same way back
        run = drills.deploy(data={"galera_tls": False, "rabbitmq_tls": False})
        if run.returncode != 0:  # Galera still on TLS: refused, as it must be; the whole-cluster stop
            stop_galera_writer_last()
            deploy_ok({})
    assert_healthy()
    assert all(reading(n, "galera") == "plain" and reading(n, "rabbitmq") == "plain" for n in NODES)
    assert not any(speaks_tls(n, p) for n in NODES for p in (GALERA_PORT, dist_port()))
