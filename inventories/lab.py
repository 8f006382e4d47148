"""Lab inventory: the nodes of the local lab (`make lab-up`), in exactly the shape of prod.py.

Shape: `controllers = (hosts, group_data)`; hosts are (name, host data) with the same keys as
production; only the data differ (lab subnet, VIP, lab-size resources, the lab's SSH key).

Which nodes: every node that exists in the lab (has a disk under /var/tmp/halab/nodes), running
or not, so a stopped or killed node stays in the inventory like a real controller that is down.
`python -m lab up --nodes 4` adds node04 here; `python -m lab remove node04` takes it out.
The restore rehearsal's nodes (lab.names.REHEARSAL_NODES: node08, node09) are never listed:
they are the site's backup_rehearsal_hosts (inventories/rehearsal.py makes them a group).

HA_LAB_NODES=node01,node02,node03 (lab only): only these of the existing nodes, e.g. the
inventory after a controller was taken out of it while it still exists.

HA_LAB_DATA (JSON object, lab only): extra group data for one run, e.g. the failover bench's
kernel-defaults profile `{"sysctl": {"net.ipv4.tcp_retries2": 15}}` or a drill's
`{"keepalived_unicast": true}`; checked by the same preflight as any inventory.

TLS between the controllers (galera_tls, rabbitmq_tls) and AMQP over TLS (rabbitmq_amqp_tls; off
by default, as in production): turned on by HA_LAB_DATA, e.g. `{"galera_tls": true, "rabbitmq_tls":
true}`; then each node's certificate is
issued from the lab's CA (lab/keys.py, /var/tmp/halab/node-tls/<node>.pem, 0600) and named in its
host data (tls_node_pem), the CA in peer_tls_ca_file.

Secrets: generated once per lab (at `lab up`, or here if missing) into /var/tmp/halab/secrets.json
(mode 0600, outside the repository, removed by `lab down --purge`).
"""

import json as _json
import os as _os
import sys as _sys
from pathlib import Path as _Path

_ROOT = str(_Path(__file__).resolve().parent.parent)
if _ROOT not in _sys.path:
    _sys.path.insert(0, _ROOT)

import lab as _lab  # noqa: E402
from lab.names import ALERT_RECEIVER_URL as _RECEIVER, NODES_DIR as _NODES_DIR, REHEARSAL_NODES as _REHEARSAL_NODES, node_index as _node_index  # noqa: E402

# the restore rehearsal's nodes are never controllers (they are backup_rehearsal_hosts, below)
_nodes = [n for n in _lab.node_names() if n not in _REHEARSAL_NODES]
if _os.environ.get("HA_LAB_NODES"):
    # lab only: an inventory without some nodes that exist (a controller being removed)
    _nodes = [n for n in _nodes if n in _os.environ["HA_LAB_NODES"].split(",")]
if not _nodes:
    raise FileNotFoundError(
        f"no lab on this machine (no nodes under {_NODES_DIR}): run `make lab-up` first")

controllers = (
    [
        (name, {
            "ssh_hostname": _lab.address(name),
            "address": _lab.address(name),
            "vrrp_priority": 160 - 10 * _node_index(name),   # node01 150, node02 140, ...
        })
        for name in _nodes
    ],
    {
        "internal_network": _lab.SUBNET,
        "vip": _lab.VIP,
        "vip_interface": _lab.IFNAME,
        # not 51 (everyone's default): the lab must not join some other VRRP group by accident
        "keepalived_virtual_router_id": 77,
        # the public endpoints on a VIP of their own (same bridge: the lab has one network)
        "external_vip": _lab.EXTERNAL_VIP,
        "keepalived_external_router_id": 78,
        # the tests and the bench ask the stats page and the RabbitMQ management API from this
        # machine (the controllers alone may by default)
        "admin_networks": [f"{_lab.HOST_ADDRESS}/32"],
        # monitoring on in the lab (issue 20): the lab tests ask Prometheus and Alertmanager from this machine
        "monitoring_enabled": True,
        "monitoring_networks": [f"{_lab.HOST_ADDRESS}/32"],
        # every Alertmanager posts to the lab's receiver, which records it (lab/alert_receiver.py)
        "monitoring_webhooks": [_RECEIVER],
        # the alert drills (tests/lab/test_96_alerts.py) wait for notifications: short groups
        "monitoring_group_wait": 5,
        "monitoring_group_interval": 15,
        "secrets_file": _lab.ensure_secrets(),
        # lab-size nodes see the host's whole memory: absolute, small limits (LAB.md item 12)
        "rabbitmq_memory_high_watermark": "256MiB",
        "memcached_memory_mb": 64,
        "mariadb_innodb_buffer_pool_size": "64M",
        # backups on (issue 18's lab tests): taken on the last node, copied to the one before it
        "backup_enabled": True,
        # the restore rehearsal's hosts: fresh lab nodes (python -m lab add node08 node09), never
        # controllers; two: one bootstrapped from the backup, one joining it by SST
        "backup_rehearsal_hosts": {_n: _lab.address(_n) for _n in _REHEARSAL_NODES},
        # lab nodes get new host keys at every rebuild (LAB.md item 14): do not record them
        "ssh_user": "root",
        "ssh_key": _lab.SSH_KEY,
        "ssh_known_hosts_file": "/dev/null",
        "ssh_strict_host_key_checking": "off",
    },
)

_extra = _os.environ.get("HA_LAB_DATA")
if _extra:
    controllers[1].update(_json.loads(_extra))

from config.peer_tls import SWITCHES as _TLS_SWITCHES  # noqa: E402

if any(controllers[1].get(_k) for _k in _TLS_SWITCHES):
    from lab.keys import ensure_node_pem as _node_pem  # noqa: E402
    from lab.names import CA_FILE as _CA_FILE  # noqa: E402

    controllers[1].setdefault("peer_tls_ca_file", str(_CA_FILE))
    for _name, _hd in controllers[0]:
        _hd.setdefault("tls_node_pem", _node_pem(_name, _hd["address"]))
