"""The Galera-aware database health check HAProxy asks (mariadb_check_method "httpchk").

`option mysql-check` only sees that mysqld completes a handshake: a node that is desynced,
still joining, donating, or cut off in a non-Primary component passes it and keeps getting
the writes. Like kolla-ansible's and openstack-ansible's clustercheck, a small service on
each controller (galera-clustercheck, python3, on mariadb_check_port of the node's address)
answers HTTP 200 only when the local node is Synced in a Primary component with wsrep_ready
ON, 503 otherwise; HAProxy's `option httpchk` + `check port` ask it.

It runs as an unprivileged system user (sysusers.d) that MariaDB knows as
'clustercheck'@'localhost' through the unix_socket plugin: no password exists, and the
account has no privileges (SHOW GLOBAL STATUS needs none).
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy

from config.files import DBCHECK
from operations.common import announce, files_of, shell, site, wait_until
from operations.before import file_state, planned_fact
from operations.steps import daemon_reload, install_files, mark_pending, mark_reload, service
from facts.galera import MysqlAccounts
from operations.galera import cluster_plan

SYSUSERS = DBCHECK["sysusers"]
UNIT_FILE = f"/etc/systemd/system/{DBCHECK['unit']}.service"
ACCOUNT_SQL = f"CREATE USER IF NOT EXISTS '{DBCHECK['account']}'@'localhost' IDENTIFIED VIA unix_socket"


def account_missing(accounts: dict) -> bool:
    """Whether the check's MariaDB account must be created (unknown state: yes, it is idempotent)."""
    return bool(accounts.get("error")) or f"{DBCHECK['account']}@localhost" not in accounts.get("users", {})


@deploy("Galera health check")
def configure():
    """The check's system account, script and unit; its MariaDB account (created once, on a
    node of the Primary component, Galera replicates it); the service restarted when its
    files changed, then awaited until it answers 200 on this node."""
    if site()["mariadb_check_method"] != "httpchk" or not files_of("dbcheck"):
        return
    unit = DBCHECK["unit"]
    shell("dbcheck: /etc/sysusers.d", ["mkdir -p /etc/sysusers.d"], when=file_state(SYSUSERS) is None)
    changed = mark_pending(DBCHECK["unit"], "dbcheck")
    reload = mark_reload("dbcheck", (UNIT_FILE,))
    ops = install_files("dbcheck")
    sysusers = ops[0]
    shell("dbcheck: system account", [f"systemd-sysusers {SYSUSERS}"], when=sysusers.will_change)

    anchor = host.name == cluster_plan().anchor
    create = anchor and account_missing(planned_fact(MysqlAccounts))
    shell("dbcheck: MariaDB account (unix_socket, no privileges)",
          [f"timeout 30 mysql -e {shlex.quote(ACCOUNT_SQL)}"], when=create)

    announce(changed, f"restart {unit}")
    daemon_reload("dbcheck: reload systemd units", "dbcheck", reload)
    service(name=f"dbcheck: {unit} running", unit=unit, restarted=changed)
    me = site().controller(host.name)
    url = f"http://{me.address}:{site()['mariadb_check_port']}/"
    probe = "python3 -c " + shlex.quote(f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)")
    shell(
        f"dbcheck: {unit} answers 200",
        [wait_until(probe, f"{unit} to answer 200 on {url}", seconds=60,
                    on_fail=f"journalctl -u {unit} -n 10 --no-pager >&2")],
        when=changed or create,
    )
