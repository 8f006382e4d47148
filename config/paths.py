"""Paths and names on a controller that more than one module needs: each written once, here.

A leaf (it imports nothing of the project): the file table (config/files.py), the facts that
read these files and the operations that act on them import it without importing each other.
The ports the project's daemons hold on every address are config/defaults.py's FIXED_PORTS.
"""

SYSCTL_CONF = "/etc/sysctl.d/60-openstack-ha.conf"
GALERA_CNF = "/etc/mysql/mariadb.conf.d/99-openstack-galera.cnf"
ERLANG_COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
EPMD_SOCKET_DROPIN = "/etc/systemd/system/epmd.socket.d/openstack-ha.conf"
# rabbitmq-server's start bounded by systemd (rabbitmq_start_timeout, the boot hang of
# rabbitmq-server#6034): a drop-in of Debian's unit, operations/rabbitmq.py.
RABBITMQ_UNIT_DROPIN = "/etc/systemd/system/rabbitmq-server.service.d/openstack-ha.conf"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
# keepalived's check_serving (keepalived_serve_check): the VIP follows the ability to serve.
KEEPALIVED_SERVE_SCRIPT = "/etc/keepalived/check_serving"
# The three secrets of the main configs, each in a file of its own that holds nothing else, so
# that --diff shows every line of haproxy.cfg, keepalived.conf and galera.cnf (masked):
# the stats page's account (an HAProxy userlist, loaded with haproxy.cfg by the unit's drop-in,
# `-f` twice), keepalived's auth_pass (an `include` in each authentication block) and
# wsrep_sst_auth (an option file of MariaDB's includedir, read by mysqld beside galera.cnf).
HAPROXY_STATS_USERS = "/etc/haproxy/openstack-ha-stats.cfg"
HAPROXY_STATS_USERLIST = "openstack_ha_stats"  # the userlist's name, in both files
KEEPALIVED_AUTH = "/etc/keepalived/openstack-ha-auth.conf"
GALERA_SST_CNF = "/etc/mysql/mariadb.conf.d/99-openstack-galera-sst.cnf"
# HAProxy's unit writes 1 here when it stops or dies and 0 once it runs (a systemd drop-in);
# keepalived tracks the file (inotify on its directory, which must exist when keepalived loads
# its config: not under /run, emptied at boot): the VIP leaves a holder whose HAProxy died at
# once. After a reboot it still says 1 (written at shutdown) until HAProxy runs again.
HAPROXY_UNIT_DROPIN = "/etc/systemd/system/haproxy.service.d/openstack-ha.conf"
HAPROXY_DOWN_FILE = "/var/lib/openstack-ha/haproxy-down"
# Maintenance (docs/operations.md "Maintenance"): 1 here takes this controller out (keepalived tracks it
# like HAPROXY_DOWN_FILE: FAULT while it says 1, so the VIP leaves and stays away, also after a
# reboot); the deploy, the report and `maintenance.py` read it. Same directory, for the same reason.
MAINTENANCE_FILE = "/var/lib/openstack-ha/maintenance"
# On every controller: the runtime-API line that puts the servers of the controllers in
# maintenance in `maint` (one line, `;`-separated); HAProxy's unit replays it at every start
# (ExecStartPost), the deploy after every reload: runtime state does not survive either.
HAPROXY_MAINT_FILE = "/var/lib/openstack-ha/haproxy-maint"
# The host firewall (config/firewall.py): its rules and the unit that loads them at boot.
FIREWALL_NFT = "/etc/openstack-ha/firewall.nft"
FIREWALL_UNIT = "openstack-ha-firewall"
# apt preferences holding the packages the site pins (package_versions), only when it pins one
# (removed again when it pins none).
APT_PINS = "/etc/apt/preferences.d/openstack-ha.pref"
# The health report's management API login (rabbitmq_monitor_user and its password, a curl
# config file: `curl -K`, never a command line), 0600 root, read by facts.rabbitmq.RabbitmqMembers.
RABBITMQ_MONITOR_CURLRC = "/etc/openstack-ha/rabbitmq-monitor.curlrc"
SST_ACCOUNT = "sst"  # mariabackup's MariaDB account (galera.cnf wsrep_sst_auth, operations/galera.py)

# The database check service's names, shared by its templates and operations/dbcheck.py.
DBCHECK = {
    "account": "clustercheck",  # system user and MariaDB account (unix_socket, no privileges)
    "script": "/usr/local/sbin/galera-clustercheck",
    "unit": "galera-clustercheck",
    "sysusers": "/etc/sysusers.d/openstack-ha-clustercheck.conf",
}

# Monitoring's units (monitoring_enabled only; config/monitoring.py): Debian's four daemons and
# the timer of the project's textfile collector.
MONITORING_UNITS = ("prometheus-node-exporter", "prometheus-mysqld-exporter", "prometheus", "prometheus-alertmanager")
METRICS_UNIT = "openstack-ha-metrics"

# Backups (backup_enabled; config/backup.py, operations/backup.py): on backup_node only, the
# script, its two services (a full, then its verification; an incremental) and their timers;
# the SSH key its copies go out with and the copy host's key it trusts, nothing else.
BACKUP_SCRIPT = "/usr/local/sbin/openstack-ha-backup"
BACKUP_TIMERS = ("openstack-ha-backup-full.timer", "openstack-ha-backup-incremental.timer")
# the services the timers (and `make backup`) start: one backup each, desyncing this node while it streams
BACKUP_SERVICES = ("openstack-ha-backup@full.service", "openstack-ha-backup@incremental.service")
BACKUP_SSH_KEY = "/root/.ssh/openstack-ha-backup"  # generated on backup_node, never leaves it
BACKUP_KNOWN_HOSTS = "/etc/openstack-ha/backup-known-hosts"
BACKUP_KEY_COMMENT = "openstack-ha-backup"  # marks its line in the copy host's authorized_keys

# TLS between the controllers (galera_tls, rabbitmq_tls; config/peer_tls.py): each daemon's copy of
# the CA certificate, the node's certificate and its key (0640 root:<the daemon's group>), and the
# Erlang distribution's TLS options (-ssl_dist_optfile).
GALERA_TLS_DIR = "/etc/mysql/openstack-tls"
RABBITMQ_TLS_DIR = "/etc/rabbitmq/openstack-tls"
RABBITMQ_DIST_OPTFILE = "/etc/rabbitmq/inter_node_tls.config"
