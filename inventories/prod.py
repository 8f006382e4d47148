"""Production inventory: the three controllers of the reference article.

These addresses are real controllers that are not ours. In this repository the file is only
ever rendered offline (`make render INVENTORY=inventories/prod.py OUT=...`) and checked by
preflight; nothing connects to it.

Shape (inventories/lab.py has the same one): `controllers = (hosts, group_data)`.
  hosts:      (name, host data) per controller; the name is the node's hostname.
  group_data: the site's data; every key not given here takes its default from
              config/defaults.py. A site changes data, never a template.
Secrets are not in this file: they come from `secrets_file` (untracked, see docs/configuration.md "Secrets") or from
HA_SECRET_<NAME> environment variables.
"""

controllers = (
    [
        ("node01", {"ssh_hostname": "100.2.30.41", "address": "100.2.30.41", "vrrp_priority": 150}),
        ("node02", {"ssh_hostname": "100.2.30.42", "address": "100.2.30.42", "vrrp_priority": 140}),
        ("node03", {"ssh_hostname": "100.2.30.43", "address": "100.2.30.43", "vrrp_priority": 130}),
    ],
    {
        "internal_network": "100.2.30.0/24",
        "vip": "100.2.30.40",
        "vip_interface": "enp8s0f0",
        "keepalived_virtual_router_id": 121,
        # The article logs to a remote syslog on node01; HAProxy wants address:port.
        "haproxy_log_target": "100.2.30.41:5140",
        "haproxy_log_facility": "local1",
        "secrets_file": "inventories/prod.secrets.json",
        # Production controllers: check their SSH host keys (known_hosts must hold them).
        "ssh_user": "root",
        "ssh_strict_host_key_checking": "yes",
    },
)
