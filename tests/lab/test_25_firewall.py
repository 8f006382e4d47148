"""The host firewall and the bound cluster ports, on the deployed lab (config/firewall.py).

A host on the lab bridge that is in no inventory (lab/stranger.py: in the client network, no
controller) reaches the VIP's listeners and AMQP, and no cluster port of any controller; the
same ports answer a controller. Every cluster daemon listens on the node address (or
loopback), never on every address. A `--limit` run that a left-out controller's firewall would
cut off is refused before any change, and the next full run repairs a table changed by hand.
"""

from __future__ import annotations

from config.firewall import rules
import lab
from lab import drills, sitemodel, stranger
from lab.drills import log

NODES = ("node01", "node02", "node03")


def listening(node: str) -> list[tuple[str, int]]:
    """(local address, port) of every TCP listener on the node."""
    out = lab.exec_(node, ["ss", "-Hltn"]).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        found.append((addr.strip("[]"), int(port)))
    return found


def test_a_host_outside_the_inventory_reaches_no_cluster_port(deployed):
    fw = rules(sitemodel.site())
    addresses = [sitemodel.node_address(n) for n in NODES]
    amqp = sitemodel.data("rabbitmq_port")
    cluster = [(a, p) for a in addresses for p in fw.cluster_ports]
    # The operators' listeners on the VIP (RabbitMQ management) admit admin_networks and the
    # controllers only: the stranger is in the client network, not in admin_networks.
    admin = [(sitemodel.vip(), p) for p in fw.admin_vip_ports]
    clients = [(sitemodel.vip(), p) for p in fw.vip_ports if p not in fw.admin_vip_ports] + [(a, amqp) for a in addresses]
    assert admin, "the lab has RabbitMQ management on the VIP: an admin listener"
    with stranger.stranger() as me:
        got = stranger.reach(cluster + clients + admin)
    reached = {t: r for t, r in got.items() if t in cluster + admin and r != "timeout"}
    assert not reached, f"{me} reached cluster or admin ports: {reached}"
    # The stranger is on the bridge and in the client network: the listeners answer it.
    unanswered = {t: r for t, r in got.items() if t in clients and r != "open"}
    assert not unanswered, unanswered
    # From a controller the same daemons answer: dropped by the firewall, not dead.
    peer = lab.exec_("node02", ["bash", "-c", " && ".join(
        f"timeout 2 bash -c '</dev/tcp/{addresses[0]}/{p}'"
        for p in (4567, sitemodel.data("rabbitmq_port") + 20000, 4369, sitemodel.data("mariadb_port"),
                  sitemodel.data("memcached_port")))])
    assert peer.returncode == 0, peer.stdout + peer.stderr
    log(f"firewall: {me} reached none of {len(cluster)} cluster ports and {len(admin)} admin ports, all {len(clients)} client ports; "
        "node02 reaches node01's cluster ports")


def test_cluster_daemons_listen_on_the_node_address_only(deployed):
    fw = rules(sitemodel.site())
    for node in NODES:
        wild = [(a, p) for a, p in listening(node)
                if p in fw.cluster_ports and a not in (sitemodel.node_address(node), "127.0.0.1", *fw.vips, *fw.external_vips)]
        assert not wild, f"{node}: cluster ports on every address: {wild}"


def test_limit_run_refused_when_a_left_out_firewall_would_drop_a_controller(healthy):
    # node02 holds the VIP: node03's table without node02 drops the holder's adverts, so node03
    # takes the VIP too (a split brain) until the full run loads its table again; the run's
    # report must come after the election settled.
    drills.place_vip("node02")
    node02 = sitemodel.node_address("node02")
    cut = lab.exec_("node03", ["nft", "delete", "element", "inet", "openstack_ha", "controllers", f"{{ {node02} }}"])
    assert cut.returncode == 0, cut.stderr
    try:
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", "--limit", "node02")
        assert run.returncode != 0, drills.run_excerpt(run.stdout)
        assert "node03 (left out by --limit) has a firewall that does not admit node02" in run.stdout, \
            drills.run_excerpt(run.stdout)
        assert "--limit node02,node03" in run.stdout
    finally:
        run = drills.deploy()  # the full run: node03's table is loaded again
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    assert "node03: load the host firewall" in run.stdout, drills.run_excerpt(run.stdout)
    elements = lab.exec_("node03", ["nft", "list", "set", "inet", "openstack_ha", "controllers"]).stdout
    assert node02 in elements, elements
    log("--limit node02 refused while node03's firewall did not admit node02; the full run loaded it again")
