"""The host firewall as data: which of the project's ports each source may reach.

One nftables table, `inet openstack_ha`, owned by the deploy (files/templates/firewall): its
chain only DROPS packets to the project's own ports from sources that have no business there,
and accepts everything else (policy accept), so the site's own rules, SSH and every port the
project does not open stay as they were. Three kinds of port:

- cluster: Galera replication, IST and SST, epmd, the Erlang distribution, the database check,
  memcached and every API server behind HAProxy on the node address: the controllers only
  (a host that reaches Galera's 4567 and knows the cluster name can join and receive a state
  transfer: every OpenStack credential);
- the VIP's listeners: the client networks (`firewall_client_networks`, default the internal
  network) and always the controllers (their OpenStack services are the VIP's clients);
- on the node address for clients: AMQP, and AMQP over TLS with rabbitmq_amqp_tls (agents on
  compute nodes talk to the brokers directly);
- the operators' listeners: the HAProxy stats page (node address, behind its password) and the
  catalogue's `admin` listeners on the VIP (RabbitMQ management): `admin_networks` and always
  the controllers (default: the controllers only); HAProxy refuses other sources as well;
- the external VIP (`external_vip`): its public listeners for anyone, no other TCP port;
- monitoring (monitoring_enabled): the exporters, Prometheus and Alertmanager on the node
  address for `monitoring_networks` and always the controllers (their Prometheus scrape every
  controller); the Alertmanagers' cluster port, TCP and UDP, for the controllers only.

VRRP is taken from the controllers only: a stranger's advertisement cannot take the VIP.
"""

from __future__ import annotations

from dataclasses import dataclass

from config import amqp_tls
from config.defaults import DIST_PORT_OFFSET, EPMD_PORT, GALERA_IST_PORT, GALERA_PORT, GALERA_SST_PORT
from config.site import Site

TABLE = "openstack_ha"  # `inet openstack_ha`: the only table the deploy writes
# Node-address ports clients reach directly (the rest of the node's ports: controllers only).
CLIENT_NODE_PORT_KEYS = ("rabbitmq_port",)
ADMIN_NODE_PORT_KEYS = ("haproxy_stats_port",)  # node-address ports of the operators
# Node-address ports of monitoring (monitoring_enabled): scraped and asked by the controllers
# and monitoring_networks; the Alertmanager cluster port is a cluster port (TCP and UDP).
MONITORING_PORT_KEYS = ("monitoring_prometheus_port", "monitoring_alertmanager_port", "monitoring_node_exporter_port",
                        "monitoring_mysqld_exporter_port", "monitoring_haproxy_exporter_port",
                        "monitoring_rabbitmq_exporter_port")


@dataclass(frozen=True)
class Rules:
    """The firewall of one site (the same on every controller)."""

    controllers: tuple[str, ...]  # the controllers' addresses and the VIPs (a holder's source)
    clients: tuple[str, ...]  # networks
    vips: tuple[str, ...]
    vip_ports: tuple[int, ...]  # the VIP's listeners: clients
    client_ports: tuple[int, ...]  # on the node address: clients
    cluster_ports: tuple[int, ...]  # controllers only (on the VIPs: but for their listeners)
    external_vips: tuple[str, ...] = ()
    external_ports: tuple[int, ...] = ()  # the public listeners on the external VIP: anyone
    admins: tuple[str, ...] = ()  # admin_networks (the controllers always may)
    admin_vip_ports: tuple[int, ...] = ()  # the `admin` listeners on the VIP: admins
    admin_ports: tuple[int, ...] = ()  # on the node address: admins
    monitors: tuple[str, ...] = ()  # monitoring_networks (the controllers always may)
    monitoring_ports: tuple[int, ...] = ()  # on the node address: monitors
    cluster_udp_ports: tuple[int, ...] = ()  # controllers only, UDP (the Alertmanagers' gossip)


def rule_count(nft_text: str) -> int:
    """How many rules the rules file puts in its chain `input` (one a line). Pure."""
    body = nft_text.split("chain input {", 1)[1].split("\n    }", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in body.splitlines()]
    return len([line for line in lines if line and not line.startswith("type filter hook")])


def client_networks(site: Site) -> tuple[str, ...]:
    """The networks the VIP's listeners answer: firewall_client_networks, else the internal network."""
    return tuple(site["firewall_client_networks"] or (site["internal_network"],))


def rules(site: Site) -> Rules:
    d = site.data
    vip_ports, external_ports, admin_vip_ports = set(), set(), set()
    for svc in site.services:
        ports = {port for _, port in svc.vip_ports(d["haproxy_tls"])}
        vip_ports |= ports
        if svc.admin:
            admin_vip_ports |= ports
        if svc.public:
            external_ports |= ports
    client_ports = {d[k] for k in CLIENT_NODE_PORT_KEYS} | set(amqp_tls.listen_ports(d))
    admin_ports = {d[k] for k in ADMIN_NODE_PORT_KEYS}
    cluster = {GALERA_PORT, GALERA_IST_PORT, GALERA_SST_PORT, EPMD_PORT, d["rabbitmq_port"] + DIST_PORT_OFFSET,
               d["memcached_port"], d["mariadb_port"], d["rabbitmq_management_port"]}
    if d["mariadb_check_method"] == "httpchk":
        cluster.add(d["mariadb_check_port"])
    cluster |= {svc.backend_port or svc.port for svc in site.services}
    monitoring = {d[k] for k in MONITORING_PORT_KEYS} if d["monitoring_enabled"] else set()
    gossip = {d["monitoring_alertmanager_cluster_port"]} if d["monitoring_enabled"] else set()
    cluster |= gossip
    external = (d["external_vip"],) if d["external_vip"] else ()
    return Rules(
        controllers=tuple(c.address for c in site.controllers) + (d["vip"],),
        clients=client_networks(site),
        vips=(d["vip"],),
        vip_ports=tuple(sorted(vip_ports)),
        client_ports=tuple(sorted(client_ports - cluster)),
        cluster_ports=tuple(sorted(cluster - client_ports - admin_ports)),
        external_vips=external,
        external_ports=tuple(sorted(external_ports)) if external else (),
        admins=tuple(d["admin_networks"] or ()),
        admin_vip_ports=tuple(sorted(admin_vip_ports)),
        admin_ports=tuple(sorted(admin_ports - cluster)),
        monitors=tuple(d["monitoring_networks"] or ()) if d["monitoring_enabled"] else (),
        monitoring_ports=tuple(sorted(monitoring - cluster)),
        cluster_udp_ports=tuple(sorted(gossip)),
    )
