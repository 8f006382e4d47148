"""Debian's keystone as the lab's backend behind the VIP's keystone listener (issue 21 item 1;
lab/keystone.py, lab/keystone_deploy.py).

On the deployed lab: keystone installed on every node (the deploy of lab/keystone_deploy.py);
a second run changes nothing; through the VIP (https, the lab's CA) a token is issued and a
project created and deleted; with one node's keystone stopped the same calls still succeed
(HAProxy takes it out, the others answer with the same fernet keys, database and cache), and
the stopped node's port is refused, not answered by a stand-in. Afterwards the port goes back to
the stand-ins on every node (keystone.release()): the other lab tests expect the stand-ins'
answers on every API port.

Marked `long` (make test-long): installing keystone on three nodes takes minutes; make test is
unchanged until it is measured.
"""

from __future__ import annotations

import pytest

from lab import drills, keystone, sitemodel

pytestmark = pytest.mark.long

NODES = ["node01", "node02", "node03"]


@pytest.fixture(scope="module")
def installed(deployed):
    run = keystone.install()
    try:
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        yield run
    finally:
        keystone.release(NODES)


def _servers_up(listener: str) -> dict:
    return {node: drills.haproxy_servers(node, listener) for node in NODES}


def _no_secret(output: str) -> None:
    values = [*keystone.ensure_secrets().values(), *sitemodel.secrets().values()]
    leaked = [v[:3] + "..." for v in values if len(v) >= 8 and v in output]
    assert not leaked, f"secret values in the deploy's output (first characters): {leaked}"


def test_installed_with_no_secret_in_its_output(installed):
    _no_secret(installed.stdout)


def test_second_run_changes_nothing(installed):
    again = keystone.install()
    assert again.returncode == 0, drills.run_excerpt(again.stdout)
    assert drills.changed_operations(again.stdout) == [], again.stdout[-6000:]
    _no_secret(again.stdout)


def test_token_and_project_through_the_vip(installed):
    client = keystone.Client()
    assert client.url.startswith("https://"), client.url  # the VIP's listener takes TLS in the lab
    for _ in range(6):  # round robin: each node serves some
        timings = client.cycle()
        assert set(timings) == {"token", "create", "delete"}


def test_one_node_stopped_calls_still_succeed(installed):
    port = keystone.backend_port(sitemodel.site())
    node = "node02"
    keystone.stop(node)
    try:
        assert drills.refuses(sitemodel.node_address(node), port, via="node01"), "a stand-in answered keystone's port"
        drills.wait_for(f"{node}'s keystone DOWN in every HAProxy", lambda: all(
            servers.get(node) == "DOWN" for servers in _servers_up(keystone.LISTENER).values()),
            timeout=60, interval=1)
        client = keystone.Client()
        for _ in range(6):
            client.cycle()
    finally:
        keystone.start(node)
    drills.wait_for(f"{node}'s keystone UP again in every HAProxy", lambda: all(
        servers.get(node) == "UP" for servers in _servers_up(keystone.LISTENER).values()),
        timeout=90, interval=1)
    keystone.Client().cycle()
