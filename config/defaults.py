"""Every site key the deploy understands, with its default.

A site (an inventory's group data) overrides any of these; a key that is not listed here is
refused by preflight, so a typo cannot pass silently. Per-host keys are in HOST_KEYS.
"""

# Keys each controller's host data must carry (see inventories/prod.py).
HOST_KEYS = {
    "address": "the node's internal address (Galera, RabbitMQ, memcached and backends bind to it)",
    "vrrp_priority": "keepalived priority, distinct per node; with nopreempt it only orders a tie",
}
# Keys a controller's host data may carry (needed only when a site key asks for them).
HOST_OPTIONAL_KEYS = {
    # galera_tls / rabbitmq_tls / rabbitmq_amqp_tls: this controller's certificate (its chain) then its unencrypted
    # private key, one PEM file on the machine that deploys (relative to the repository root, or
    # absolute; mode 0600, never in git). The certificate names the node's address (and its name).
    "tls_node_pem": "the PEM file (certificate, then key) of this controller for galera_tls, rabbitmq_tls and rabbitmq_amqp_tls",
}

DEFAULTS = {
    # --- the internal network and the VIP ---
    "internal_network": None,  # required, e.g. "100.2.30.0/24"
    "vip": None,  # required: the address HAProxy listens on, held by keepalived
    "vip_interface": "enp8s0f0",
    # --- the external VIP (off by default) ---
    # A second VIP for the public API endpoints only (kolla-ansible's kolla_external_vip_address,
    # openstack-ansible's haproxy_bind_external_lb_vip_address): the listeners of the catalogue
    # marked `public` bind it too, always with TLS (haproxy_tls must be on); the database,
    # RabbitMQ management and nova_metadata never do. Its own VRRP instance (its own router id),
    # advertised on vip_interface like the internal one, the address put on
    # external_vip_interface. The certificate (haproxy_tls_pem) must name both VIPs.
    "external_vip": None,  # None: no external VIP, the configs of before
    "external_vip_interface": None,  # None: vip_interface
    "external_network": None,  # the external VIP's subnet (its prefix); None: internal_network
    "keepalived_external_router_id": None,  # required with external_vip; not keepalived_virtual_router_id
    # --- keepalived ---
    "keepalived_virtual_router_id": 51,  # unique on the segment; 51 is everyone's default
    "keepalived_advert_int": 1,
    "keepalived_check_interval": 2,
    "keepalived_check_fall": 2,
    "keepalived_check_rise": 10,
    "keepalived_unicast": False,  # unicast_peer list instead of multicast VRRP
    "keepalived_check_script": "/etc/keepalived/check_alive.sh",
    "keepalived_track_haproxy_unit": True,  # the VIP leaves at once when HAProxy's unit stops or dies
    # The VIP follows the ability to serve (docs/failover.md "Partitions"): check_serving, tracked like
    # check_alive (FAULT after `fall` failures), fails on a controller that sees a minority of
    # the controllers (cut off: its peers' database check port does not answer within the peer
    # timeout) or whose HAProxy has no usable server in the database listener (and each of
    # keepalived_serve_listeners) while a peer it sees can serve. The whole cluster down (every
    # mariadb stopped) leaves the VIP where it is. False: the configs of before.
    "keepalived_serve_check": True,
    "keepalived_serve_listeners": [],  # API listeners (catalogue names) that must have a usable server too
    "keepalived_serve_interval": 1,  # seconds between runs; the VIP leaves a cut-off holder in ~2-3 s
    "keepalived_serve_fall": 2,
    "keepalived_serve_rise": 5,
    "keepalived_serve_peer_timeout_ms": 300,  # a peer that has not answered by then is not seen
    # A minority controller that gave the VIP up takes it again when no controller answered on
    # the VIP for this long (the others are down, not cut off: what it serves beats nothing).
    "keepalived_serve_last_resort": 10,
    # --- HAProxy ---
    "haproxy_maxconn": 4000,
    "haproxy_log_target": "127.0.0.1:514",
    "haproxy_log_facility": "local1",
    "haproxy_stats_socket": "/run/haproxy/admin.sock",
    "haproxy_stats_port": 1984,
    "haproxy_stats_user": "openstack",
    "haproxy_retries": 3,
    # `option srvtcpka` in both defaults sections: HAProxy's connections to the controllers
    # use TCP keepalive with the kernel's timers (the `sysctl` below). A request in flight to
    # a controller that lost power then fails after ~19 s instead of `timeout server` (60 s):
    # measured by make bench-failover (docs/failover.md "Stale connections").
    "haproxy_server_keepalive": True,
    "haproxy_timeouts": {
        "http-request": "10s",
        "queue": "1m",
        # A connection to a controller on the LAN is made in well under a millisecond. One not
        # made in 500 ms is retried on another server (retries, redispatch) and counts as an
        # observed error (haproxy_error_limit): a server that lost power (no reset comes
        # back) costs a request 0.5 s, not the article's 10 s. A lost SYN (Linux resends it
        # after 1 s) or a full accept queue is a failed try too: for an API server, another
        # serves it. The database listener keeps mariadb_connect_timeout (below).
        "connect": "500ms",
        "client": "1m",
        "server": "1m",
        "check": "10s",
    },
    # Failover: a request whose connection to a server fails, or that gets no response at all,
    # goes again to another server (retry-on, and option redispatch on every retry); POST and
    # PATCH only after a failed connection (never sent twice to an application). A server whose
    # connections fail is marked down from those errors (observe layer4), before its checks.
    "haproxy_retry_on": "conn-failure empty-response",  # "": HAProxy's own (connection failures)
    "haproxy_redispatch": 1,  # every Nth retry to another server; -1: the last (HAProxy's default)
    "haproxy_error_limit": 2,  # consecutive connection errors that mark a server down; 0: off
    "haproxy_check_inter": 2000,
    "haproxy_check_rise": 2,
    "haproxy_check_fall": 5,
    # TLS on the VIP for every HTTP API of the catalogue (`ssl crt`; horizon 443, its port 80
    # redirects to https); the servers behind stay plain HTTP. The certificate chain and key are
    # the secret haproxy_tls_pem, installed at haproxy_tls_pem_path (0640 root:haproxy). A site
    # without a certificate says so: "haproxy_tls": False (the configs of before, clear text).
    "haproxy_tls": True,
    "haproxy_tls_pem_path": "/etc/haproxy/openstack-ha.pem",
    # The VIP's TLS policy (HAProxy's global ssl-default-bind-*: every `ssl` bind): Mozilla's
    # "intermediate" without its DHE suites: TLS 1.2 and 1.3, ECDHE key exchange (forward
    # secrecy) with AEAD ciphers only, no session tickets (a ticket key kept until HAProxy
    # restarts decrypts every recorded session it protected). Debian's own haproxy.cfg, which
    # ours replaces, had such a policy; without it TLS 1.2 CBC-SHA1 and static-RSA suites answer.
    "haproxy_tls_ciphers": ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"),
    "haproxy_tls_ciphersuites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
    "haproxy_tls_options": "ssl-min-ver TLSv1.2 no-tls-tickets",
    # HSTS on the HTTPS listeners (Strict-Transport-Security on answers over TLS): browsers use
    # https only for this many seconds (Mozilla: two years). 0: no header.
    "haproxy_hsts_max_age": 63072000,
    # The health report warns this many days before the installed certificate expires (FAIL
    # once expired or unreadable); preflight warns the same about the certificate it is given.
    # 0: no warning, only the failure.
    "haproxy_tls_expiry_warn_days": 30,
    # Keep the article's dated listeners (keystone_admin 35357, glance_registry 9191).
    "haproxy_legacy_services": True,
    # Per-service overrides and site services: {name: {field: value}}; see config/catalogue.py.
    "services": {},
    # --- MariaDB Galera ---
    "galera_cluster_name": "openstack",
    "galera_sst_method": "mariabackup",
    # Galera's write-set cache (gcache.size): a node that was away (an upgrade turn, a restart)
    # rejoins by IST, the writes it missed, only while they are still in a donor's gcache; past
    # it, a full state transfer (SST) of the whole datadir. 512M holds far more than an OpenStack
    # control plane writes during one turn (minutes); a rolling upgrade fails its turn on an SST
    # ("raise galera_gcache_size"). Galera's own default is 128M. Preallocated on disk
    # (/var/lib/mysql/galera.cache); a change restarts mariadb, one node at a time.
    "galera_gcache_size": "512M",
    # evs.suspect_timeout: a member silent this long is suspected dead, and when every other
    # member agrees it is dropped from the view. Until then every commit waits for it: a member
    # that loses power stalls the writes for this long plus up to evs.inactive_check_period
    # (0.5 s) and the new view. Galera's default, 5 s, gave 6.0-6.4 s without an acknowledged
    # write on the lab (issue 22 item 7: at most 5 s); 3 s is measured in docs/failover.md. Below
    # it a member paused that long (an I/O stall, a VM pause) is dropped and rejoins by IST.
    "galera_suspect_timeout": 3,
    # Galera's causality check for the OpenStack services' sessions (wsrep_sync_wait, a bit
    # mask: 1 reads (SELECT, SHOW, BEGIN), 2 UPDATE and DELETE, 4 INSERT and REPLACE, 8 SHOW):
    # printed as oslo.db's mysql_wsrep_sync_wait. 1: a read waits until its node has applied
    # every write committed before it. The soak read stale rows through the VIP without it
    # (docs/soak.md); 0 turns it off (the services' default), more bits make writes wait too.
    "services_wsrep_sync_wait": 1,
    "mariadb_port": 3306,
    # HAProxy's database health check: "httpchk" (default: the galera-clustercheck service on
    # each controller answers 200 only when its node is Synced in a Primary component, the way
    # kolla-ansible and openstack-ansible check Galera) or "mysql-check" (the article's: talks
    # MySQL on the database port, so it only sees that mysqld completes a handshake; set
    # mariadb_check_port to mariadb_port with it).
    "mariadb_check_method": "httpchk",
    "mariadb_check_port": 9200,
    "mariadb_check_user": "haproxy",  # the account mysql-check logs in as
    # The database listener's checks: the writer's loss is seen within inter x fall (plus one
    # check timeout), then its sessions are shut and the next server takes the writes.
    "mariadb_check_inter": 1000,
    "mariadb_check_fall": 2,
    "mariadb_check_timeout": "1s",
    # The database listener's own connect timeout: above Linux's first SYN resend (1 s), so one
    # lost SYN or a burst of reconnects does not make two observed errors that take the
    # healthy writer out (every session shut, the writes moved, and moved back after `rise`).
    "mariadb_connect_timeout": "1500ms",
    "mariadb_admin_user": "admin",
    "mariadb_max_connections": 4096,
    # Every client reaches MariaDB through HAProxy, from a controller's address: MariaDB's
    # per-host count of broken handshakes (default 100) then blocks every client of the VIP
    # at once ("Host ... is blocked because of many connection errors", seen on the lab after
    # a few failovers under write load, until FLUSH HOSTS). The largest value: never blocked.
    "mariadb_max_connect_errors": 4294967295,
    "mariadb_innodb_buffer_pool_size": "512M",
    # 1 = durable commits (each transaction's log flushed); 2 or 0 lose the last second of
    # commits when nodes crash together (Jepsen, MariaDB Galera 2026).
    "mariadb_innodb_flush_log_at_trx_commit": 1,
    # TLS between the controllers (docs/security.md "TLS between the controllers"), off by default:
    # Galera's replication and IST (wsrep_provider_options socket.ssl_*) and its mariabackup SST
    # (the [sst] group's ssl-*), with each controller's own certificate (host key tls_node_pem)
    # checked against the CA of peer_tls_ca_file. Members with and without TLS cannot talk, so
    # switching it on a running cluster is a whole-cluster stop: the deploy refuses it and says how.
    "galera_tls": False,
    # --- RabbitMQ ---
    # The Erlang distribution (clustering, and the CLI tools' connections) over TLS
    # (-proto_dist inet_tls, an ssl_dist_optfile), the same certificates as galera_tls; AMQP stays
    # clear text (the OpenStack services' client side). A switch on a running cluster stops every
    # broker, then they start together (as for a new Erlang cookie): a short outage of AMQP.
    "rabbitmq_tls": False,
    # The CA certificate (PEM, no key) that signed every controller's tls_node_pem, on the machine
    # that deploys (relative to the repository root, or absolute); needed with galera_tls,
    # rabbitmq_tls or rabbitmq_amqp_tls.
    "peer_tls_ca_file": None,
    "rabbitmq_port": 5672,
    # AMQP over TLS for the OpenStack services (openstack-ansible's rabbitmq_use_ssl), off by
    # default: a TLS listener on rabbitmq_amqp_tls_port of each node's address, with the node's
    # certificate (tls_node_pem, the CA of peer_tls_ca_file: the services check it with
    # oslo.messaging's ssl_ca_file), TLS 1.2+ and the VIP's cipher policy (haproxy_tls_ciphers and
    # _ciphersuites). A change of rabbitmq.conf: a rolling restart, one broker at a time (nodes
    # with and without the listener cluster together; clients reconnect to another broker).
    "rabbitmq_amqp_tls": False,
    "rabbitmq_amqp_tls_port": 5671,
    # The plain AMQP listener (rabbitmq_port) stays open beside the TLS one while the services
    # move their transport_url to TLS (openstack-ansible keeps both); False closes it, allowed
    # only with rabbitmq_amqp_tls (a broker no client reaches is refused).
    "rabbitmq_amqp_plain": True,
    # Client certificates: False (the default, as oslo.messaging's services present none unless
    # told to) asks for none; True requires one signed by the CA of peer_tls_ca_file
    # (verify_peer, fail_if_no_peer_cert): every service then needs ssl_cert_file and ssl_key_file.
    "rabbitmq_amqp_tls_verify_peer": False,
    "rabbitmq_management_port": 15672,
    "rabbitmq_partition_handling": "pause_minority",
    # AMQP heartbeat timeout (s) the brokers propose to clients, and the deploy prints for
    # oslo.messaging (heartbeat_timeout_threshold). A client finds a silent broker (powered off, cut
    # off, its VM paused) within one to two timeouts, then reconnects to another. RabbitMQ's
    # default, 60 s, kept the soak's messages waiting 27-79 s after such faults; its guide calls
    # 5-20 s optimal, and lower than 5 s likely to give false positives.
    "rabbitmq_heartbeat": 10,
    # How long (s) a start of rabbitmq-server may take before it is killed and started again:
    # systemd's TimeoutStartSec at every start (a drop-in of Debian's unit, whose own is 600 s) and
    # the deploy's first try of each restart. A normal start takes ~6 s on the lab; Debian 12's
    # RabbitMQ 3.10.8 on Erlang 25 sometimes hangs at boot in `global` (rabbitmq-server#6034),
    # seen after 3 of ~8 power cuts in one day: systemd kills the hung start once this bound
    # passes and starts it again 10 s later, without a deploy. A broker that waits longer than
    # this for its peers' tables is killed and started again too, and waits again: harmless.
    "rabbitmq_start_timeout": 120,
    # A fraction of RAM (0.4) or an absolute size ("2GiB").
    "rabbitmq_memory_high_watermark": 0.4,
    # "quorum" (current RabbitMQ practice) or "mirrored" (the article's ha-mode all policy).
    "rabbitmq_queue_type": "quorum",
    "rabbitmq_user": "openstack",  # the OpenStack services' account: its vhost only, no tag
    # The management API's administrator (tag administrator, no vhost permission); its
    # password is the secret rabbitmq_admin_password.
    "rabbitmq_admin_user": "admin",
    # The health report's account (tag monitoring, no vhost permission): it reads each node's
    # cluster view from the management API (GET /api/nodes) with curl, no Erlang VM started;
    # its password is the secret rabbitmq_monitor_password, in a 0600 root file on every
    # controller (config/paths.py RABBITMQ_MONITOR_CURLRC).
    "rabbitmq_monitor_user": "openstack-ha-monitor",
    "rabbitmq_vhost": "openstack",
    # --- memcached ---
    "memcached_port": 11211,
    "memcached_memory_mb": 1024,
    "memcached_max_connections": 4096,
    # --- kernel ---
    # Merged into these defaults key by key (a site changes a value, cannot drop a key).
    "sysctl": {
        # lets HAProxy bind the VIP on nodes that do not hold it
        "net.ipv4.ip_nonlocal_bind": 1,
        # Stale connections (docs/failover.md "Stale connections", figures from make bench-failover):
        # the OpenStack services on the controllers are the VIP's clients, and a request in
        # flight when the VIP holder dies gets no answer and no reset; PyMySQL and the mysql
        # client turn SO_KEEPALIVE on, so the first probe after tcp_keepalive_time reaches
        # the new holder and is reset. Kernel defaults (7200 s, 75 s x 9) hang such a session
        # for two hours; 10 s + 3 x 3 s gives up on a peer that is gone in under 20 s.
        "net.ipv4.tcp_keepalive_time": 10,
        "net.ipv4.tcp_keepalive_intvl": 3,
        "net.ipv4.tcp_keepalive_probes": 3,
        # Unacknowledged data to a peer that is gone (memcached, RabbitMQ and HAProxy's
        # backends are reached at node addresses, where nothing answers after a power cut):
        # retransmitted for ~15 min at the default 15; 6 (kolla-ansible's documented
        # value) gives up after ~25 s.
        "net.ipv4.tcp_retries2": 6,
    },
    # --- maintenance (maintenance.py, docs/operations.md "Maintenance") ---
    # Seconds the OpenStack API servers of a controller taken out are drained (their open
    # sessions finish, new ones go to the others) before they go to maint and what is left is
    # shut. The database server never drains: maint and its sessions shut at once (one writer).
    "maintenance_drain_seconds": 10,
    # --- backups (config/backup.py, operations/backup_plan.py; docs/operations.md "Backups") ---
    # Off by default: with it off the deploy does what it did before. What exists so far is
    # the plan, the manifest and the script's template; the timer is not installed yet.
    "backup_enabled": False,
    # systemd OnCalendar expressions (the timers): a full backup daily, incrementals hourly,
    # off the hour of the full. None: no incrementals.
    "backup_full_calendar": "*-*-* 01:00:00",
    "backup_incremental_calendar": "*-*-* *:30:00",
    "backup_retention_days": 14,  # days of full backups kept (the newest verified full always)
    # The controller that takes the backups; None: the last controller (as for the SST donor).
    # Never the database writer (Site.writer): preflight refuses it.
    "backup_node": None,
    "backup_dir": "/var/backups/openstack-ha/mariadb",
    # A copy off the backup node (one kept on the node it protects dies with it): a controller's
    # name, or [user@]host reached over SSH; None: the controller before backup_node.
    "backup_copy_to": None,
    "backup_copy_dir": None,  # the copy's directory there; None: backup_dir
    # "gzip" (on every Debian 12) or "zstd" (Debian 12's zstd package, faster).
    "backup_compress": "gzip",
    # A backup starts only when the free space of backup_dir holds the last full's size (the
    # datadir's before the first) plus this margin.
    "backup_space_margin_percent": 50,
    # The restore rehearsal's hosts (make restore-rehearsal; operations/rehearsal.py): {name:
    # address} of hosts that are NOT controllers, where a backup is restored as a Galera cluster
    # of its own (the first bootstrapped from it, the others joining by SST) and compared with its
    # manifest. {}: no rehearsal (refused, saying so). Reached over SSH at the address, with the
    # controllers' ssh_* settings; 2 or 3 hosts, 1 restores without a state transfer.
    "backup_rehearsal_hosts": {},
    # --- package versions (docs/operations.md "Upgrades"; operations/upgrade_plan.py) ---
    # {Debian package: exact Debian version} for the packages the deploy installs
    # (config/packages.py), e.g. {"mariadb-server": "1:10.11.19-0+deb12u1"}. A package not
    # listed gets apt's candidate when it is installed, and is never upgraded (as before). A
    # pinned one is installed at that version, held there (an apt preferences file), and a
    # differing installed version is planned as an upgrade, shown in --dry and the blast radius
    # (the rolling upgrade itself is not yet applied by the deploy).
    "package_versions": {},
    # --- monitoring (config/monitoring.py, docs/monitoring.md) ---
    # Off by default: with it off the deploy does what it did before. What exists so far is
    # the alert rules, the Prometheus and Alertmanager configs and the textfile collector's
    # format, rendered and checked offline; the deploy does not install them yet.
    "monitoring_enabled": False,
    # Who may scrape the exporters and reach Prometheus and Alertmanager on the node addresses
    # besides the controllers; None: the controllers only.
    "monitoring_networks": None,
    # Ports on each node's address (Debian's and the upstream defaults; HAProxy's built-in
    # exporter answers on a listener of its own, 8405 in HAProxy's documentation). Debian 12
    # has no memcached exporter: memcached's state is in the project's textfile (node-exporter).
    "monitoring_prometheus_port": 9090,
    "monitoring_alertmanager_port": 9093,
    "monitoring_alertmanager_cluster_port": 9094,  # the Alertmanagers' gossip (one alert sent once)
    "monitoring_node_exporter_port": 9100,
    "monitoring_mysqld_exporter_port": 9104,
    "monitoring_haproxy_exporter_port": 8405,
    "monitoring_rabbitmq_exporter_port": 15692,  # the rabbitmq_prometheus plugin's
    "monitoring_scrape_interval": 15,  # seconds
    "monitoring_evaluation_interval": 15,  # seconds
    # Thresholds of the alert rules.
    "monitoring_certificate_days": 21,  # the VIP's certificate expires within this many days
    "monitoring_maintenance_hours": 4,  # a controller in maintenance for longer than this
    "monitoring_backup_schedules": 2,  # the newest backup is older than this many schedule periods
    "monitoring_flow_control_percent": 10,  # Galera paused by flow control this share of the time
    # Where Alertmanager sends the alerts: a list of webhook URLs (http or https), each
    # receives every alert once. []: none (the alerts are seen in Alertmanager only).
    "monitoring_webhooks": [],
    # Alertmanager's grouping (route group_wait / group_interval, seconds): a new alert's first
    # notification waits group_wait for others of its group; the group's next notification
    # (another alert, or the resolved one) comes group_interval later at the earliest.
    # Alertmanager's own defaults, 30 s and 5 min.
    "monitoring_group_wait": 30,
    "monitoring_group_interval": 300,
    # --- the host firewall (config/firewall.py) ---
    # On by default: Galera's state transfer hands every OpenStack credential to any host that
    # reaches 4567 and knows the cluster name. The project's table only drops packets to its
    # own ports from the wrong sources (cluster ports: the controllers; the VIP's listeners,
    # AMQP: the client networks; the operators' listeners: admin_networks); SSH and every other
    # port are untouched.
    "firewall": True,
    # Who may use the VIP's listeners and AMQP (the controllers always may);
    # None: the internal network.
    "firewall_client_networks": None,
    # Who may reach the operators' listeners: the HAProxy stats page (node:haproxy_stats_port)
    # and the catalogue's `admin` listeners (the RabbitMQ management API on the VIP), by HAProxy
    # (`tcp-request connection reject`) and the firewall; the controllers always may.
    # None: the controllers only (an operator works from one, or lists their networks here).
    "admin_networks": None,
    # --- secrets ---
    # An untracked JSON file with the secrets (relative to the repository root), or None
    # to take every secret from HA_SECRET_<NAME> environment variables.
    "secrets_file": None,
}

# The failover timers of before (docs/failover.md "Failover"): what kolla-ansible and openstack-ansible
# ship and this project had, each a DEFAULTS key. Data, not defaults: with them (and no TLS) the
# deploy renders the haproxy.cfg of before (tests/unit/test_tls.py), and make bench-failover runs
# its "anchors" profile with them, beside the defaults.
FAILOVER_ANCHORS = {
    "keepalived_track_haproxy_unit": False,
    "keepalived_serve_check": False,  # the VIP followed HAProxy alone (docs/failover.md "Partitions")
    "haproxy_timeouts": {"connect": "10s"},  # merged key by key into the defaults' timeouts
    "haproxy_retry_on": "",
    "haproxy_redispatch": -1,
    "haproxy_error_limit": 0,
    "mariadb_check_inter": 2000,
    "mariadb_check_fall": 5,
    "mariadb_check_timeout": "10s",
    "mariadb_connect_timeout": "10s",
    "galera_suspect_timeout": 5,  # Galera's own evs.suspect_timeout (neither kolla-ansible nor openstack-ansible sets it)
}

# Ports the daemons hold whatever the site says. The deploy binds each to the node address;
# FIXED_PORTS: (port, daemon, held on every address when not bound, e.g. before the deploy).
GALERA_PORT, GALERA_IST_PORT, GALERA_SST_PORT, EPMD_PORT = 4567, 4568, 4444, 4369
DIST_PORT_OFFSET = 20000  # RabbitMQ's Erlang distribution port: rabbitmq_port + 20000
FIXED_PORTS = (
    (22, "sshd", True),
    (EPMD_PORT, "epmd (RabbitMQ)", True),
    (GALERA_PORT, "Galera replication", True),
    (GALERA_IST_PORT, "Galera IST", False),
    (GALERA_SST_PORT, "Galera SST", False),
)

# Keys pyinfra itself (connectors, global arguments) reads from host data; not ours to check.
PYINFRA_KEY_PREFIXES = ("ssh_", "_", "local_", "docker_", "winrm_")
