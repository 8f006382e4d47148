"""The Debian packages the deploy installs, per component: one list, read by the operations
that install them and by preflight (a `package_versions` pin may only name one of these).
A leaf: it imports nothing of the project."""

PACKAGES = {
    "firewall": ("nftables",),
    "memcached": ("memcached",),
    "galera": ("mariadb-server", "mariadb-client", "galera-4", "mariadb-backup", "socat", "rsync"),
    # curl: the health report reads the management API with it (facts.rabbitmq RabbitmqMembers)
    "rabbitmq": ("rabbitmq-server", "curl"),
    "haproxy": ("haproxy", "socat", "openssl"),
    "keepalived": ("keepalived", "socat"),
    # monitoring_enabled only (docs/monitoring.md): Debian 12's, nothing from outside its archive.
    "monitoring": ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "prometheus-mysqld-exporter"),
}

# Every package a pin may name, sorted (what preflight lists as the fix).
INSTALLED = tuple(sorted({name for names in PACKAGES.values() for name in names}))

# Binary packages built from one source, released together: pinned to one version or not at all
# (apt cannot install mariadb-server 10.11.19 beside mariadb-client 10.11.18).
SAME_SOURCE = (("mariadb-server", "mariadb-client", "mariadb-backup"),)


# The systemd unit an upgrade of a package stops before it and starts after (a rolling upgrade's
# turn, operations/upgrade_plan.py); a package absent here runs no daemon of its own (socat,
# rsync, openssl, nftables: its ruleset stays loaded) and the upgrade stops nothing for it.
# galera-4 is mariadbd's wsrep provider, loaded at its start.
UNIT_OF = {"mariadb-server": "mariadb", "mariadb-client": "mariadb", "mariadb-backup": "mariadb", "galera-4": "mariadb",
           "rabbitmq-server": "rabbitmq-server", "haproxy": "haproxy", "keepalived": "keepalived",
           "memcached": "memcached"}


def installed(firewall: bool = True, monitoring: bool = True) -> tuple[str, ...]:
    """The packages a site's deploy installs: nftables only with the host firewall, the
    Prometheus packages only with monitoring."""
    optional = {"firewall": firewall, "monitoring": monitoring}
    return tuple(sorted({name for comp, names in PACKAGES.items() if optional.get(comp, True) for name in names}))
