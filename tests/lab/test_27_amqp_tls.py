"""AMQP over TLS for the OpenStack services on the lab, on and off again (docs/security.md "AMQP over
TLS"; config/amqp_tls.py). The lab is everyone's: whatever happens, `finally` deploys it back off
and checks it is as it was found.

First run on the lab 2026-12-06: passed (209 s, with 3.), confirming what tests/unit/test_amqp_tls.py
could only assume (marked LAB below).

1. On (HA_LAB_DATA {"rabbitmq_amqp_tls": true}; inventories/lab.py issues each node's certificate
   from the lab's CA): one deploy, announced as a rolling restart (one broker at a time, in
   inventory order, no whole-cluster stop); the report's `amqp tls` row is OK on every node.
   LAB: RabbitMQ 3.10.8 on Erlang 25 accepts the rabbitmq.conf keys (listeners.ssl.1,
   ssl_options.ciphers.N with OpenSSL and TLS 1.3 names, honor_ecc_order).
2. Each node's 5671, from this host: `openssl s_client` completes TLS 1.3 and TLS 1.2 with that
   node's own certificate (verified against the lab's CA for its address); TLS 1.1 and a CBC suite
   are refused; pika publishes and consumes a message over TLS on every node; 5672 still serves
   (rabbitmq_amqp_plain, the default). The next deploy changes nothing.
3. (`long`: make test-long, two more rolling restarts) 5672 closed ({"rabbitmq_amqp_plain": false}): refused on every node, TLS still serves, the
   report is clean. LAB: the deploy's plan sees a running broker by a listener on either port
   (RabbitmqCluster, operations/before.py cluster_fact_args), so neither this switch nor the next
   takes a running broker for a stuck one: the rolling restart announced, never "restart a stuck
   broker"; the next run changes nothing.
4. Off again (finally): a rolling restart; 5671 refused everywhere, 5672 serves, the report has no
   `amqp tls` row (nothing answers there) and is clean.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

import lab
from lab import drills, sitemodel
from lab.drills import log
from lab.keys import NODE_TLS_DIR
from lab.names import CA_FILE
from health.report import OK

NODES = ["node01", "node02", "node03"]
ON = {"rabbitmq_amqp_tls": True}
CLOSED = {"rabbitmq_amqp_tls": True, "rabbitmq_amqp_plain": False}
ROLLING = "restart rabbitmq-server (one node at a time)"


def tls_port() -> int:
    return sitemodel.data("rabbitmq_amqp_tls_port")  # read when a test runs: no lab at collection


def plain_port() -> int:
    return sitemodel.data("rabbitmq_port")


def deploy_ok(data: dict) -> str:
    run = drills.deploy(data=data)
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    return run.stdout


def report(data: dict) -> dict:
    """verify.py's JSON report with `data` (HA_LAB_DATA): its amqp tls row judges that setting."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "health.json"
        env = {"HA_VERIFY_JSON": str(path), **({"HA_LAB_DATA": json.dumps(data)} if data else {})}
        run = drills.pyinfra("-y", "inventories/lab.py", "verify.py", env=env, timeout=drills.DEPLOY_TIMEOUT)
        assert path.exists(), drills.run_excerpt(run.stdout)
        return json.loads(path.read_text())


def amqp_rows(data: dict) -> dict[str, list[dict]]:
    got = report(data)
    assert got["ok"], got.get("failures")
    return {n: [r for r in rows if r["name"] == "amqp tls"] for n, rows in got["hosts"].items()}


def s_client(node: str, *options: str) -> str:
    """openssl s_client from this host to `node`'s TLS port, the lab's CA and the node's address checked."""
    address = lab.address(node)
    run = subprocess.run(["timeout", "10", "openssl", "s_client", "-brief", "-connect", f"{address}:{tls_port()}",
                          "-CAfile", str(CA_FILE), "-verify_return_error", "-verify_ip", address, *options],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return run.stdout + run.stderr


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(CA_FILE))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def served_certificate(node: str) -> str:
    """SHA1 of the certificate `node`'s TLS port presents, verified for its address."""
    address = lab.address(node)
    with socket.create_connection((address, tls_port()), timeout=5) as raw:
        with tls_context().wrap_socket(raw, server_hostname=address) as conn:
            return hashlib.sha1(conn.getpeercert(binary_form=True)).hexdigest()


def node_certificate(node: str) -> str:
    """SHA1 of the certificate of `node`'s tls_node_pem (lab/keys.py), the certificate only."""
    pem = (NODE_TLS_DIR / f"{node}.pem").read_text()
    der = ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")])
    return hashlib.sha1(der).hexdigest()


def round_trip(node: str, tls: bool) -> None:
    """pika to `node` (over TLS on its TLS port, or plain), as the services' account: a message
    published to a queue of its own comes back."""
    import pika

    address = lab.address(node)
    credentials = pika.PlainCredentials(sitemodel.data("rabbitmq_user"), drills.secrets()["rabbitmq_password"])
    options = pika.SSLOptions(tls_context(), server_hostname=address) if tls else None
    params = pika.ConnectionParameters(address, tls_port() if tls else plain_port(), sitemodel.data("rabbitmq_vhost"),
                                       credentials, ssl_options=options, connection_attempts=3, retry_delay=2,
                                       socket_timeout=10)
    body = f"amqp-tls-{node}-{uuid.uuid4()}".encode()
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.confirm_delivery()
        channel.basic_publish("", queue, body)
        method, _, got = channel.basic_get(queue, auto_ack=True)
        assert method is not None and got == body, (node, tls, got)
    finally:
        connection.close()


def restarted_one_at_a_time(out: str) -> None:
    assert ROLLING in out, drills.run_excerpt(out)
    changed = drills.changed_operations(out)
    assert not [op for op in changed if "stuck" in op], changed  # a running broker is never taken for a stuck one
    restarts = [op for op in changed if "rabbitmq: restart node" in op]
    assert restarts == [f"RabbitMQ | rabbitmq: restart {n}" for n in NODES], changed
    assert not [op for op in changed if "together" in op or "cookie" in op], changed


@pytest.mark.long  # 129 s in make test's full run of 2026-12-06 (66 min): make test-long
def test_amqp_tls_on_then_off(healthy):  # the conftest fixture: a healthy lab first
    try:
        # 1. on: a rolling restart, the report's row OK on every node
        restarted_one_at_a_time(deploy_ok(ON))
        drills.wait_healthy(300)
        rows = amqp_rows(ON)
        assert all(len(rows[n]) == 1 and rows[n][0]["status"] == OK for n in NODES), rows

        # 2. every node: TLS 1.3 and 1.2 with its own certificate; 1.1 and CBC refused; AMQP over TLS; 5672 too
        for node in NODES:
            assert "Protocol version: TLSv1.3" in (out := s_client(node)) and "Verification: OK" in out, out
            assert "Protocol version: TLSv1.2" in (out := s_client(node, "-tls1_2")), out
            # SECLEVEL=0: this host's OpenSSL 3 would not offer TLS 1.1 at all otherwise; the broker must refuse it
            assert "CONNECTION ESTABLISHED" not in (out := s_client(node, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")), out
            assert "CONNECTION ESTABLISHED" not in (out := s_client(node, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")), out
            assert served_certificate(node) == node_certificate(node), node
            round_trip(node, tls=True)
        round_trip("node01", tls=False)
        assert drills.changed_operations(deploy_ok(ON)) == []  # the next run changes nothing
        log("amqp tls: on, 5671 answers TLS 1.2+ with each node's certificate, AMQP over TLS on every node")
    finally:
        # 4. off again, as the lab was found
        out = deploy_ok({})
    assert_off(out)


@pytest.mark.long  # a third and fourth rolling restart: make test-long (make test's budget)
def test_the_plain_listener_closed_then_open_again(healthy):
    try:
        # 3. the plain listener closed: refused, TLS serves; the plan still sees the brokers
        restarted_one_at_a_time(deploy_ok(CLOSED))
        drills.wait_healthy(300)
        assert all(drills.refuses(lab.address(n), plain_port()) for n in NODES)
        for node in NODES:
            round_trip(node, tls=True)
        assert all(rows[0]["status"] == OK for rows in amqp_rows(CLOSED).values())
        assert drills.changed_operations(deploy_ok(CLOSED)) == []
        log("amqp tls: 5672 closed, 5671 serves")
    finally:
        out = deploy_ok({})
    assert_off(out)


def assert_off(out: str) -> None:
    """Off (the lab as found): a rolling restart; 5671 refused everywhere, 5672 serves, no `amqp tls` row."""
    restarted_one_at_a_time(out)
    drills.wait_healthy(300)
    assert all(drills.refuses(lab.address(n), tls_port()) for n in NODES)
    for node in NODES:
        round_trip(node, tls=False)
    assert amqp_rows({}) == {n: [] for n in NODES}  # nothing answers on 5671: no row
