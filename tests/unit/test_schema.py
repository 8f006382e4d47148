"""The site schema (config/schema.py) and a table of wrong sites: each row is a change to
prod.py's valid site and the one-line refusal preflight must give (host or controllers, key,
a fragment of the message). Then: no control character reaches any file, no hostile string
reaches a command line, and inventory files that are not inventories give one line."""

from __future__ import annotations

import subprocess

import pytest

from unitkit import FAKE_SECRETS, PY, REPO, prod_data, secrets_env, write_inventory
from config.catalogue import CATALOGUE, FIELDS
from config.defaults import DEFAULTS, HOST_KEYS, HOST_OPTIONAL_KEYS
from config.preflight import check
from config.schema import HOST, SECRET, SERVICE, SITE, problems
from config.secrets import SECRETS

G = "controllers"


def test_every_key_and_field_has_a_rule_with_a_one_line_meaning():
    assert set(SITE) == set(DEFAULTS) and set(HOST) == set(HOST_KEYS) | set(HOST_OPTIONAL_KEYS)
    assert set(SERVICE) == FIELDS and set(SECRET) == set(SECRETS)
    for rule in [*SITE.values(), *HOST.values(), *SERVICE.values(), *SECRET.values()]:
        assert rule.meaning and "\n" not in rule.meaning and rule.expect


def test_the_defaults_and_the_catalogue_pass_their_own_rules():
    for key, value in DEFAULTS.items():
        if value is not None:
            assert list(problems(key, SITE[key].kind, value)) == [], key
    for svc in CATALOGUE:
        for field in FIELDS - ({"port"} if svc.port_key else set()):  # a site key holds that port
            assert list(problems(field, SERVICE[field].kind, getattr(svc, field))) == [], (svc.name, field)
    for name, value in FAKE_SECRETS.items():
        assert SECRET[name].kind.why(value) is None, name


def site(group=None, hosts=None, drop=()):
    """prod.py's data with group keys changed, hosts changed ({index: {key: value}}, or a
    callable taking the host list), host keys dropped ((index, key), ...)."""
    h, g = prod_data()
    g.update(group or {})
    if callable(hosts):
        h = hosts(h)
    else:
        for i, changes in (hosts or {}).items():
            h[i][1].update(changes)
    for i, key in drop:
        del h[i][1][key]
    return h, g


def rename(i, name):
    return lambda h: [(name, d) if j == i else (n, d) for j, (n, d) in enumerate(h)]


NL = "\n"
# (group changes, host changes, where, key, fragment of the message)
WRONG_SITES = [
    # types: ints are ints, booleans are booleans
    ({"haproxy_maxconn": "4k"}, None, G, "haproxy_maxconn", "not an integer"),
    ({"haproxy_maxconn": "4000"}, None, G, "haproxy_maxconn", "not an integer"),
    ({"haproxy_maxconn": True}, None, G, "haproxy_maxconn", "not an integer"),
    ({"haproxy_maxconn": 4000.0}, None, G, "haproxy_maxconn", "not an integer"),
    ({"haproxy_maxconn": 0}, None, G, "haproxy_maxconn", "outside"),
    ({"keepalived_unicast": "false"}, None, G, "keepalived_unicast", "not a boolean"),
    ({"keepalived_unicast": 0}, None, G, "keepalived_unicast", "not a boolean"),
    ({"haproxy_server_keepalive": "yes"}, None, G, "haproxy_server_keepalive", "not a boolean"),
    ({"haproxy_legacy_services": None}, None, G, "haproxy_legacy_services", "not a boolean"),
    ({"keepalived_virtual_router_id": "121"}, None, G, "keepalived_virtual_router_id", "not an integer"),
    ({"keepalived_virtual_router_id": 0}, None, G, "keepalived_virtual_router_id", "1-255"),
    ({"keepalived_virtual_router_id": 256}, None, G, "keepalived_virtual_router_id", "1-255"),
    ({"keepalived_advert_int": 0}, None, G, "keepalived_advert_int", "outside"),
    ({"keepalived_advert_int": "1s"}, None, G, "keepalived_advert_int", "not an integer"),
    ({"keepalived_check_interval": -2}, None, G, "keepalived_check_interval", "outside"),
    ({"keepalived_check_fall": False}, None, G, "keepalived_check_fall", "not an integer"),
    ({"keepalived_check_rise": None}, None, G, "keepalived_check_rise", "not an integer"),
    ({"haproxy_retries": -1}, None, G, "haproxy_retries", "outside"),
    ({"haproxy_check_rise": 0}, None, G, "haproxy_check_rise", "outside"),
    ({"haproxy_check_fall": "5"}, None, G, "haproxy_check_fall", "not an integer"),
    ({"haproxy_check_inter": "2 s"}, None, G, "haproxy_check_inter", "not an integer"),
    ({"haproxy_check_inter": 0}, None, G, "haproxy_check_inter", "not an integer"),
    ({"mariadb_max_connections": 0}, None, G, "mariadb_max_connections", "outside"),
    ({"mariadb_max_connections": "4096"}, None, G, "mariadb_max_connections", "not an integer"),
    ({"mariadb_innodb_flush_log_at_trx_commit": True}, None, G, "mariadb_innodb_flush_log_at_trx_commit", "not one of"),
    ({"mariadb_innodb_flush_log_at_trx_commit": "1"}, None, G, "mariadb_innodb_flush_log_at_trx_commit", "not one of"),
    ({"mariadb_innodb_flush_log_at_trx_commit": 3}, None, G, "mariadb_innodb_flush_log_at_trx_commit", "not one of"),
    ({"memcached_memory_mb": "64M"}, None, G, "memcached_memory_mb", "not an integer"),
    ({"memcached_memory_mb": 0}, None, G, "memcached_memory_mb", "outside"),
    ({"memcached_max_connections": 1.5}, None, G, "memcached_max_connections", "not an integer"),
    # sizes and times in each daemon's units
    ({"mariadb_innodb_buffer_pool_size": "512MB"}, None, G, "mariadb_innodb_buffer_pool_size", "512M"),
    ({"mariadb_innodb_buffer_pool_size": "-1"}, None, G, "mariadb_innodb_buffer_pool_size", "not"),
    ({"mariadb_innodb_buffer_pool_size": 1024}, None, G, "mariadb_innodb_buffer_pool_size", "not"),
    ({"rabbitmq_memory_high_watermark": 2}, None, G, "rabbitmq_memory_high_watermark", "fraction"),
    ({"rabbitmq_memory_high_watermark": 0}, None, G, "rabbitmq_memory_high_watermark", "fraction"),
    ({"rabbitmq_memory_high_watermark": "2 GiB"}, None, G, "rabbitmq_memory_high_watermark", "2GiB"),
    ({"rabbitmq_memory_high_watermark": "2Gi"}, None, G, "rabbitmq_memory_high_watermark", "2GiB"),
    ({"rabbitmq_memory_high_watermark": "40%"}, None, G, "rabbitmq_memory_high_watermark", "fraction"),
    ({"haproxy_timeouts": {"connect": "5 s"}}, None, G, "haproxy_timeouts.connect", "10s"),
    ({"haproxy_timeouts": {"connect": "5sec"}}, None, G, "haproxy_timeouts.connect", "10s"),
    ({"haproxy_timeouts": {"connect": 0}}, None, G, "haproxy_timeouts.connect", "not"),
    # zero is no timeout (HAProxy reads 0 as none): refused in every unit
    ({"haproxy_timeouts": {"connect": "0"}}, None, G, "haproxy_timeouts.connect", "not"),
    ({"haproxy_timeouts": {"connect": "0s"}}, None, G, "haproxy_timeouts.connect", "not"),
    ({"haproxy_timeouts": {"server": "0ms"}}, None, G, "haproxy_timeouts.server", "not"),
    ({"haproxy_timeouts": {"client": "05s"}}, None, G, "haproxy_timeouts.client", "not"),
    ({"haproxy_timeouts": {"connect": -1}}, None, G, "haproxy_timeouts.connect", "not"),
    ({"haproxy_timeouts": {"conect": "5s"}}, None, G, "haproxy_timeouts.conect", "unknown name"),
    ({"haproxy_timeouts": ["connect", "5s"]}, None, G, "haproxy_timeouts", "not a dict"),
    ({"haproxy_timeouts": {"client": "1m\n    listen x"}}, None, G, "haproxy_timeouts.client", "control character"),
    # choices
    ({"galera_sst_method": "xtrabackup"}, None, G, "galera_sst_method", "mariabackup"),
    ({"galera_gcache_size": "512MB"}, None, G, "galera_gcache_size", "512M, 1G"),
    ({"galera_gcache_size": 512}, None, G, "galera_gcache_size", "not a string"),
    ({"mariadb_check_method": "tcp"}, None, G, "mariadb_check_method", "httpchk"),
    ({"rabbitmq_queue_type": "classic"}, None, G, "rabbitmq_queue_type", "quorum"),
    ({"rabbitmq_partition_handling": "pause-minority"}, None, G, "rabbitmq_partition_handling", "pause_minority"),
    ({"haproxy_log_facility": "local8"}, None, G, "haproxy_log_facility", "local7"),
    # ports
    ({"haproxy_stats_port": 0}, None, G, "haproxy_stats_port", "1-65535"),
    ({"haproxy_stats_port": 70000}, None, G, "haproxy_stats_port", "1-65535"),
    ({"haproxy_stats_port": None}, None, G, "haproxy_stats_port", "not an integer"),
    ({"mariadb_check_port": 0}, None, G, "mariadb_check_port", "1-65535"),
    ({"mariadb_check_port": None}, None, G, "mariadb_check_port", "not an integer"),
    ({"mariadb_check_port": 70000}, None, G, "mariadb_check_port", "1-65535"),
    ({"mariadb_port": "3306"}, None, G, "mariadb_port", "not an integer"),
    ({"memcached_port": 65536}, None, G, "memcached_port", "1-65535"),
    ({"rabbitmq_port": 50000}, None, G, "rabbitmq_port", "45535"),
    ({"rabbitmq_management_port": -1}, None, G, "rabbitmq_management_port", "1-65535"),
    # port clashes on the node address and the VIP
    ({"haproxy_stats_port": 22}, None, G, "haproxy_stats_port", "sshd"),
    ({"haproxy_stats_port": 4369}, None, G, "haproxy_stats_port", "epmd"),
    ({"haproxy_stats_port": 25672}, None, G, "haproxy_stats_port", "Erlang distribution"),
    ({"haproxy_stats_port": 4567}, None, G, "haproxy_stats_port", "Galera replication"),
    ({"mariadb_check_port": 4568}, None, G, "mariadb_check_port", "Galera IST"),
    ({"mariadb_check_port": 4444}, None, G, "mariadb_check_port", "Galera SST"),
    ({"mariadb_check_port": 11211}, None, G, "mariadb_check_port", "memcached"),
    ({"mariadb_check_port": 5672}, None, G, "mariadb_check_port", "RabbitMQ AMQP"),
    ({"mariadb_check_port": 15672}, None, G, "mariadb_check_port", "RabbitMQ management"),
    ({"haproxy_stats_port": 9200}, None, G, "haproxy_stats_port", "galera-clustercheck"),
    ({"mariadb_check_port": 1984}, None, G, "mariadb_check_port", "HAProxy stats"),
    ({"memcached_port": 3306}, None, G, "memcached_port", "MariaDB"),
    ({"rabbitmq_port": 5673, "haproxy_stats_port": 25673}, None, G, "haproxy_stats_port", "Erlang distribution"),
    ({"services": {"ssh_api": {"port": 22}}}, None, G, "services.ssh_api.port", "sshd"),
    ({"services": {"horizon": {"port": 4369}}}, None, G, "services.horizon.port", "epmd"),
    ({"services": {"octavia_api": {"port": 4567}}}, None, G, "services.octavia_api.port", "every address"),
    ({"services": {"octavia_api": {"port": 5000}}}, None, G, "services.octavia_api.port", "keystone_internal"),
    ({"mariadb_port": 5000}, None, G, "services.mariadb.port", "keystone_internal"),
    # services: fields by the schema, names, the catalogue
    ({"services": {"horizon": {"port": "80"}}}, None, G, "services.horizon.port", "not an integer"),
    ({"services": {"horizon": {"port": 0}}}, None, G, "services.horizon.port", "1-65535"),
    ({"services": {"horizon": {"balance": "source\n    listen evil"}}}, None, G, "services.horizon.balance", "control character"),
    ({"services": {"horizon": {"balance": "sourse"}}}, None, G, "services.horizon.balance", "balance algorithm"),
    ({"services": {"horizon": {"mode": "udp"}}}, None, G, "services.horizon.mode", "http"),
    ({"services": {"horizon": {"enabled": "no"}}}, None, G, "services.horizon.enabled", "not a boolean"),
    ({"services": {"horizon": {"fall": 0}}}, None, G, "services.horizon.fall", "outside"),
    ({"services": {"horizon": {"backend_port": 70000}}}, None, G, "services.horizon.backend_port", "1-65535"),
    ({"services": {"horizon": {"options": ["httplog\n    listen evil"]}}}, None, G, "services.horizon.options", "control character"),
    ({"services": {"horizon": {"options": "httplog"}}}, None, G, "services.horizon.options", "not a list"),
    ({"services": {"horizon": {"http_request": ["deny # comment"]}}}, None, G, "services.horizon.http_request", "without '#'"),
    ({"services": {"mariadb": {"timeouts": {"client": "1 hour"}}}}, None, G, "services.mariadb.timeouts", "not"),
    ({"services": {"mariadb": {"timeouts": [("client",)]}}}, None, G, "services.mariadb.timeouts", "not"),
    ({"services": {"horizon": {"prot": 8080}}}, None, G, "services", "'prot'"),
    ({"services": {"horizn": {"enabled": False}}}, None, G, "services", "did you mean horizon"),
    ({"services": {"octavia api": {"port": 9876}}}, None, G, "services.octavia api", "unknown name"),
    ({"services": {"evil\nlisten": {"port": 9876}}}, None, G, "services.evil\\nlisten", "control character"),
    ({"services": ["octavia_api"]}, None, G, "services", "not a dict"),
    ({"services": {"horizon": None}}, None, G, "services.horizon", "not a dict"),
    # strings that reach a file or a command: patterns, no control character
    ({"galera_cluster_name": "openstack\nwsrep_on = OFF"}, None, G, "galera_cluster_name", "control character"),
    ({"galera_cluster_name": "open stack"}, None, G, "galera_cluster_name", "not a name"),
    ({"galera_cluster_name": ""}, None, G, "galera_cluster_name", "not a name"),
    ({"haproxy_log_target": "127.0.0.1:514\nlisten evil"}, None, G, "haproxy_log_target", "control character"),
    ({"haproxy_log_target": "100.2.30.41 5140"}, None, G, "haproxy_log_target", "log target"),
    ({"haproxy_log_target": "127.0.0.1:99999"}, None, G, "haproxy_log_target", "port"),
    ({"haproxy_log_target": "syslog.example:514"}, None, G, "haproxy_log_target", "address:port"),
    ({"haproxy_stats_user": "open:stack"}, None, G, "haproxy_stats_user", "account name"),
    ({"haproxy_stats_socket": "run/haproxy.sock"}, None, G, "haproxy_stats_socket", "absolute path"),
    ({"haproxy_stats_socket": "/run/$(id).sock"}, None, G, "haproxy_stats_socket", "absolute path"),
    ({"keepalived_check_script": "/etc/keepalived/../../tmp/x"}, None, G, "keepalived_check_script", "no .. part"),
    ({"keepalived_check_script": '/etc/keepalived/x"; touch /tmp/x'}, None, G, "keepalived_check_script", "absolute path"),
    ({"rabbitmq_user": "openstack; touch /tmp/x"}, None, G, "rabbitmq_user", "account name"),
    ({"rabbitmq_user": "-rf"}, None, G, "rabbitmq_user", "account name"),
    ({"rabbitmq_vhost": "/"}, None, G, "rabbitmq_vhost", "not a name"),
    ({"mariadb_admin_user": "admin'@'%"}, None, G, "mariadb_admin_user", "account name"),
    ({"mariadb_check_user": "x" * 33}, None, G, "mariadb_check_user", "account name"),
    ({"sysctl": {"net.ipv4.tcp_retries2": "6; reboot"}}, None, G, "sysctl.net.ipv4.tcp_retries2", "not"),
    ({"sysctl": {"net.ipv4.tcp_retries2": True}}, None, G, "sysctl.net.ipv4.tcp_retries2", "not"),
    ({"sysctl": {"kernel": 1}}, None, G, "sysctl.kernel", "unknown name"),
    ({"secrets_file": 5}, None, G, "secrets_file", "not a string"),
    # the network, the VIP, the interface
    ({"internal_network": "100.2.30.0"}, None, G, "internal_network", "address/prefix"),
    ({"internal_network": "100.2.30.0/33"}, None, G, "internal_network", "address/prefix"),
    ({"internal_network": "100.2.30.40/31"}, None, G, "internal_network", "no room"),
    ({"vip": "100.2.30.0"}, None, G, "vip", "network address"),
    ({"vip": "100.2.30.255"}, None, G, "vip", "broadcast address"),
    ({"vip": "100.2.31.40"}, None, G, "vip", "outside"),
    ({"vip": "fd00::40"}, None, G, "vip", "outside"),
    ({"vip": "100.2.30.400"}, None, G, "vip", "not an IP address"),
    ({"vip": None}, None, G, "vip", "not a string"),
    ({"vip_interface": "enp8s0f0 "}, None, G, "vip_interface", "interface name"),
    ({"vip_interface": "a-very-long-interface"}, None, G, "vip_interface", "at most 15"),
    ({"vip_interface": "enp8s0f0.vlan123"}, None, G, "vip_interface", "at most 15"),  # 16: one too many
    ({"external_vip_interface": "enp8s0f0.vlan123"}, None, G, "external_vip_interface", "at most 15"),
    ({"vip_interface": "eth0/1"}, None, G, "vip_interface", "interface name"),
    ({"vip_interface": "eth0:1"}, None, G, "vip_interface", "interface name"),
    ({"vip_interface": ""}, None, G, "vip_interface", "interface name"),
    # controllers: names, addresses, priorities, SSH targets
    (None, rename(1, "Node02"), "Node02", "name", "lowercase hostname"),
    (None, rename(1, "ctl-a;id"), "ctl-a;id", "name", "lowercase hostname"),
    (None, rename(1, "node_02"), "node_02", "name", "lowercase hostname"),
    (None, rename(1, "-node02"), "-node02", "name", "lowercase hostname"),
    (None, rename(1, "node02.example.com"), "node02.example.com", "name", "lowercase hostname"),
    (None, rename(1, "n" * 64), "n" * 64, "name", "lowercase hostname"),
    (None, rename(2, "node02"), "node02", "name", "2 controllers share this name"),
    (None, {1: {"address": "100.2.30.0"}}, "node02", "address", "network address"),
    (None, {1: {"address": "100.2.30.255"}}, "node02", "address", "broadcast address"),
    (None, {1: {"address": "100.2.31.42"}}, "node02", "address", "outside"),
    (None, {1: {"address": "fd00::42"}}, "node02", "address", "outside"),
    (None, {1: {"address": "node02"}}, "node02", "address", "not an IP address"),
    (None, {1: {"address": 1}}, "node02", "address", "not a string"),
    (None, {2: {"address": "100.2.30.42"}}, "node03", "address", "node02"),
    (None, {1: {"address": "100.2.30.40"}}, "node02", "address", "VIP"),
    (None, {1: {"vrrp_priority": "140"}}, "node02", "vrrp_priority", "not an integer"),
    (None, {1: {"vrrp_priority": True}}, "node02", "vrrp_priority", "not an integer"),
    (None, {1: {"vrrp_priority": 255}}, "node02", "vrrp_priority", "1-254"),
    (None, {1: {"vrrp_priority": 150}}, "node02", "vrrp_priority", "node01"),
    (None, {2: {"ssh_hostname": "100.2.30.42"}}, "node03", "ssh_hostname", "node02"),
    (None, {1: {"vrrp_prio": 140}}, "node02", "vrrp_prio", "did you mean vrrp_priority"),
    (None, {0: {"vip": "100.2.30.40"}}, "node01", "vip", "site-wide key"),
    # unknown keys
    ({"vip_interfce": "enp8s0f0"}, None, G, "vip_interfce", "did you mean vip_interface"),
    ({"haproxy_timeout": {}}, None, G, "haproxy_timeout", "did you mean haproxy_timeouts"),
]


@pytest.mark.parametrize("group,hosts,where,key,fragment", WRONG_SITES,
                         ids=[f"{r[2]}/{r[3]}-{i}" for i, r in enumerate(WRONG_SITES)])
def test_a_wrong_site_is_refused_in_one_line(group, hosts, where, key, fragment):
    h, g = site(group, hosts)
    report = check(h, g, secrets=dict(FAKE_SECRETS))
    hits = [p for p in report.errors if (p.where, p.key) == (where, key)]
    assert len(hits) == 1, [str(p) for p in report.errors]
    line = str(hits[0])
    assert line.startswith(f"error: {where}: {key}: ") and "; fix: " in line and NL not in line
    assert fragment in line, line


def test_the_table_has_at_least_a_hundred_rows():
    assert len(WRONG_SITES) >= 100


def test_a_missing_host_key():
    h, g = site(drop=[(1, "address")])
    assert [(p.where, p.key) for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors] == [("node02", "address")]


@pytest.mark.parametrize("group,key", [
    ({"haproxy_timeouts": {"connect": "5s"}}, "haproxy_timeouts"),
    ({"sysctl": {"net.ipv4.tcp_retries2": 8}}, "sysctl"),
])
def test_nested_data_merges_key_by_key(group, key):
    from config.site import build_site

    h, g = site(group)
    assert check(h, g, secrets=dict(FAKE_SECRETS)).problems == []
    data = build_site(h, g).data[key]
    assert data == {**DEFAULTS[key], **group[key]}


def test_a_valid_site_with_every_kind_of_value_passes():
    h, g = site({
        "haproxy_timeouts": {"connect": 5000, "tunnel": "1h"}, "haproxy_check_inter": "2s",
        "vip_interface": "enp8s0f0.vlan12",  # 15 characters: the longest Linux allows
        "rabbitmq_memory_high_watermark": "2GiB", "mariadb_innodb_buffer_pool_size": 2**30,
        "haproxy_log_target": "/dev/log", "services": {"octavia_api": {"port": 9876, "balance": "leastconn"}},
        "sysctl": {"net.ipv4.tcp_rmem": "4096 87380 6291456"}, "keepalived_unicast": True,
    })
    assert check(h, g, secrets=dict(FAKE_SECRETS)).problems == []


@pytest.mark.parametrize("value", [1, "1ms", "1us", "1s", "10s", 2**31 - 1])
def test_the_shortest_and_longest_haproxy_times_pass(value):
    h, g = site({"haproxy_timeouts": {"connect": value}})
    assert check(h, g, secrets=dict(FAKE_SECRETS)).problems == []


# --- no control character reaches a file -------------------------------------------------

CONTROLS = ["\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85"]
STRING_KEYS = [k for k, v in DEFAULTS.items() if isinstance(v, str)] + ["internal_network", "vip"]


@pytest.mark.parametrize("char", CONTROLS, ids=repr)
def test_no_string_with_a_control_character_passes(char):
    for key in STRING_KEYS:
        value = (DEFAULTS[key] or {"internal_network": "100.2.30.0/24", "vip": "100.2.30.40"}[key])
        for bad in (value + char, char + value, value[:2] + char + value[2:]):
            h, g = site({key: bad})
            assert (G, key) in {(p.where, p.key) for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors}, (key, bad)
    for field in ("balance", "description"):
        h, g = site({"services": {"horizon": {field: f"source{char}x"}}})
        assert any(p.key == f"services.horizon.{field}" for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors)
    h, g = site(hosts=rename(1, f"node02{char}"))
    assert any(p.key == "name" for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors)
    for name in SECRETS:
        h, g = site()
        report = check(h, g, secrets={**FAKE_SECRETS, name: FAKE_SECRETS[name][:4] + char + FAKE_SECRETS[name][4:7]})
        assert [(p.where, p.key) for p in report.errors] == [(G, name)], name


# --- no hostile string reaches a command line ------------------------------------------------

HOSTILE = ["; touch /tmp/x", "$(id)", "`id`", "a\nb", "a'b", 'a"b', "a b", "a|b", "a&b", "x>y", "*", "\\x"]
# Every value a command on the controllers is built from (operations/*.py), by site key.
COMMAND_KEYS = ["vip", "vip_interface", "internal_network", "haproxy_stats_socket", "keepalived_check_script",
                "rabbitmq_user", "rabbitmq_vhost", "mariadb_check_user", "mariadb_admin_user", "mariadb_check_port",
                "memcached_port", "galera_cluster_name"]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_strings_never_pass_for_a_key_that_reaches_a_command(value):
    for key in COMMAND_KEYS:
        h, g = site({key: value})
        assert (G, key) in {(p.where, p.key) for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors}, key
    h, g = site({"sysctl": {"net.ipv4.tcp_retries2": value}})
    # several words are one sysctl value (net.ipv4.tcp_rmem); host.py reads them quoted
    assert value == "a b" or any(p.key == "sysctl.net.ipv4.tcp_retries2" for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors)
    h, g = site(hosts=rename(1, value))
    assert (value, "name") in {(p.where, p.key) for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors}
    h, g = site(hosts={1: {"address": value}})
    assert ("node02", "address") in {(p.where, p.key) for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors}


# --- inventory files that are not inventories: one line, never a traceback -----------------

BROKEN = {
    "raises": ("import os\nraise RuntimeError('no lab here')\n", "site.py:2", "RuntimeError: no lab here"),
    "none": ("controllers = None\n", "site.py", "NoneType"),
    "short-host": ("controllers = ([('node01',)], {})\n", "site.py", "host #1"),
    "string-data": ("controllers = ([('node01', 'address=1.2.3.4')], {})\n", "node01", "not a dict"),
    "import-fails": ("import no_such_module_ha\n", "site.py:1", "ModuleNotFoundError"),
    "syntax": ("controllers = (\n", "site.py", "SyntaxError"),
    "exits": ("import sys\nsys.exit(3)\n", "site.py:2", "SystemExit"),
    "int-host": ("controllers = ([1, 2, 3], {})\n", "site.py", "host #1"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_an_inventory_that_is_not_one_gives_one_line(tmp_path, name):
    content, where, fragment = BROKEN[name]
    inv = tmp_path / "site.py"
    inv.write_text(content)
    proc = subprocess.run([PY, "-m", "config.preflight", str(inv)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=secrets_env(FAKE_SECRETS))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0] and fragment in lines[0], lines


def test_duplicate_names_pyinfra_would_merge_are_seen_in_the_inventory_file(tmp_path, monkeypatch):
    from config.site import inventory_shape

    h, g = prod_data()
    h[2] = ("node02", h[2][1])
    inv = write_inventory(tmp_path, h, g)

    class Merged:  # what pyinfra's Inventory gives: one node02, the last data
        def get_group(self, _):
            return [type("H", (), {"name": n})() for n in ("node01", "node02")]

        def get_host_data(self, name):
            return dict(h[0][1] if name == "node01" else h[2][1])

        def get_group_data(self, _):
            return g

    monkeypatch.setattr("sys.argv", ["/venv/bin/pyinfra", "-y", str(inv), "deploy.py"])
    hosts, _ = inventory_shape(Merged())
    assert [n for n, _ in hosts] == ["node01", "node02", "node02"]
    report = check(hosts, g, secrets=dict(FAKE_SECRETS))
    assert ("node02", "name") in {(p.where, p.key) for p in report.errors}
    monkeypatch.setattr("sys.argv", ["pytest", str(inv)])  # not pyinfra: the file is not read again
    assert [n for n, _ in inventory_shape(Merged())[0]] == ["node01", "node02"]


def test_a_secrets_file_readable_by_others_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "secrets.json"
    path.write_text("{}")
    path.chmod(0o644)
    monkeypatch.setenv("HA_SECRETS_FILE", str(path))
    h, g = prod_data()
    errors = [p for p in check(h, g, secrets=dict(FAKE_SECRETS)).errors if p.key == "secrets_file"]
    assert len(errors) == 1 and f"chmod 600 {path}" in str(errors[0]) and str(path) in errors[0].message
    path.chmod(0o600)
    assert check(h, g, secrets=dict(FAKE_SECRETS)).problems == []


# --- every limit at its edge: the last legal value passes, the first beyond is refused ---------
# Written from what each daemon accepts, not read from the rules: a rule whose bound moves by
# one fails a row here (`make mutate` proves each row can fail).

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
# (rule table, key, legal values, illegal values or (value, fragment of the reason))
EDGES = [
    (SITE, "keepalived_virtual_router_id", [1, 255], [0, 256]),
    (SITE, "keepalived_external_router_id", [None, 1, 255], [0, 256]),
    (SITE, "keepalived_advert_int", [1, 255], [0, 256]),
    (SITE, "keepalived_check_interval", [1, 3600], [0, 3601]),
    (SITE, "keepalived_check_fall", [1, 1000], [0, 1001]),
    (SITE, "haproxy_maxconn", [1, 10_000_000], [0, 10_000_001]),
    (SITE, "haproxy_stats_port", [1, 65535], [0, 65536]),
    (SITE, "haproxy_retries", [0, 100], [-1, 101]),
    (SITE, "haproxy_redispatch", [-100, -1, 100], [-101, 101]),
    (SITE, "haproxy_error_limit", [0, 100], [-1, 101]),
    (SITE, "haproxy_tls_expiry_warn_days", [0, 3650], [-1, 3651]),
    (SITE, "maintenance_drain_seconds", [0, 3600], [-1, 3601]),
    (SITE, "mariadb_max_connections", [1, 100_000], [0, 100_001]),
    (SITE, "mariadb_innodb_buffer_pool_size", [5_242_880, 1_125_899_906_842_624, "5M"],  # 5 MiB .. 1 PiB
     [5_242_879, 1_125_899_906_842_625, "0M"]),
    (SITE, "mariadb_innodb_flush_log_at_trx_commit", [0, 1, 2], [-1, 3]),
    (SITE, "rabbitmq_port", [1, 45535], [0, 45536]),  # + 20000 (Erlang distribution) stays a port
    (SITE, "rabbitmq_memory_high_watermark", [1, 1.0, 0.4, "1k"], [0, 1.01, "0GiB"]),
    (SITE, "memcached_memory_mb", [1, 1_048_576], [0, 1_048_577]),
    (SITE, "memcached_max_connections", [1, 1_000_000], [0, 1_000_001]),
    (SITE, "mariadb_connect_timeout", [1, 2_147_483_647, "1us", "1d"], [0, 2_147_483_648, "0", "0s", "1w"]),
    # HAProxy's limit, 2^31-1 ms, in each unit: the last count under it passes, the next is refused
    (SITE, "haproxy_check_inter", ["2147483647ms", "2147483s", "35791m", "596h", "24d", "2147483647000us"],
     [("2147483648ms", "above HAProxy's limit"), ("2147484s", "above"), ("35792m", "above"), ("597h", "above"),
      ("25d", "above"), ("2147483648000us", "above"), (2_147_483_648, "above HAProxy's limit")]),
    (SITE, "haproxy_hsts_max_age", [0, 315_360_000], [-1, 315_360_001]),  # 0: no header .. 10 years
    (SITE, "backup_retention_days", [1, 3650], [0, 3651]),
    (SITE, "backup_space_margin_percent", [0, 1000], [-1, 1001]),
    (SITE, "backup_full_calendar", ["daily", "*-*-* 23:59:59", "Mon *-*-* 00:00"],
     [("*-*-* 24:00", "an hour outside 0-23"), ("*-*-* 01:60", "a minute outside 0-59"),
      ("*-*-* 01:00:60", "a second outside 0-59")]),
    (SITE, "backup_copy_to", ["a" * 32 + "@h", "h" * 254], ["a" * 33 + "@h", "h" * 255]),
    (SITE, "keepalived_serve_interval", [1, 60], [0, 61]),
    (SITE, "keepalived_serve_peer_timeout_ms", [50, 10_000], [49, 10_001]),
    (SITE, "keepalived_serve_last_resort", [1, 3600], [0, 3601]),
    # Galera: above evs.keepalive_period (1 s), below evs.inactive_timeout (15 s)
    (SITE, "galera_suspect_timeout", [2, 14], [1, 15]),
    (SITE, "services_wsrep_sync_wait", [0, 15], [-1, 16]),  # Galera's bit mask: four bits
    (SITE, "rabbitmq_heartbeat", [5, 600], [4, 601, 0]),  # below 5 s: false alarms; 0 would turn heartbeats off
    (SITE, "rabbitmq_start_timeout", [60, 3600], [59, 3601, 0]),  # below 60 s: a sound start after a power cut killed; 0: no bound (systemd's infinity)
    (SITE, "mariadb_max_connect_errors", [1, 2**64 - 1], [0, 2**64]),  # MariaDB's unsigned long
    (SITE, "monitoring_group_wait", [0, 3600], [-1, 3601]),
    (SITE, "monitoring_group_interval", [1, 86400], [0, 86401]),
    (SITE, "monitoring_scrape_interval", [1, 3600], [0, 3601]),
    (SITE, "monitoring_evaluation_interval", [1, 3600], [0, 3601]),
    (SITE, "monitoring_certificate_days", [1, 3650], [0, 3651]),
    (SITE, "monitoring_maintenance_hours", [1, 8760], [0, 8761]),  # a year
    (SITE, "monitoring_backup_schedules", [1, 100], [0, 101]),
    (SITE, "monitoring_flow_control_percent", [1, 100], [0, 101]),
    (SITE, "haproxy_tls_ciphers", ["A" * 2000], ["", "A" * 2001]),
    (SITE, "haproxy_tls_ciphersuites", ["A" * 2000], ["", "A" * 2001]),
    (SITE, "sysctl", [{"net.ipv4.x": -9_223_372_036_854_775_808}, {"net.ipv4.x": 9_223_372_036_854_775_807}],
     [{"net.ipv4.x": -9_223_372_036_854_775_809}, {"net.ipv4.x": 9_223_372_036_854_775_808}]),
    (SITE, "vip_interface", ["e", "a" * 15], ["a" * 16, "..", "."]),
    (SITE, "mariadb_admin_user", ["a" * 32], ["a" * 33, ".a"]),
    (SITE, "galera_cluster_name", ["a" * 64], ["a" * 65]),
    (SITE, "services", [{"a" * 64: {}}], [{"a" * 65: {}}]),
    (SITE, "haproxy_log_target", ["127.0.0.1:1", "127.0.0.1:65535", "[::1]:514", "/dev/log", "stdout"],
     [("127.0.0.1:0", "outside 1-65535"), ("127.0.0.1:65536", "outside 1-65535"),
      ("127.0.0.1:123456", "not a log target"), ("1.2.3:514", "not address:port")]),
    (SITE, "internal_network", ["10.0.0.0/30", "100.2.30.1/24"],  # 4 addresses; host bits are ignored
     [("10.0.0.0/31", "no room"), ("100.2.30.0", "not a network"), (5, "not a network")]),
    (SITE, "firewall_client_networks", [None, ["192.0.2.7/32"], ["192.0.2.1/24"]],
     [["fd00::/64"], ["192.0.2.7"], [5], ["0.0.0.0/33"]]),
    (HOST, "vrrp_priority", [1, 254], [0, 255]),
    (SERVICE, "timeouts", [[("connect", "5s")], {"connect": 1}], [[("conect", "5s")], [("connect", "0s")]]),
    (SECRET, "vrrp_auth_pass", ["a", "a" * 8], ["", "a" * 9]),
    (SECRET, "haproxy_stats_password", ["a" * 256], ["", "a" * 257]),
    (SECRET, "mariadb_admin_password", ["a" * 256], ["", "a" * 257]),
    (SECRET, "mariadb_sst_password", ["a" * 256], ["", "a" * 257]),
    (SECRET, "rabbitmq_password", ["a" * 256], ["", "a" * 257]),
    (SECRET, "rabbitmq_admin_password", ["a" * 256], ["", "a" * 257]),
    (SECRET, "rabbitmq_monitor_password", ["a" * 256], ["", "a" * 257]),
    (SITE, "galera_gcache_size", ["1M", "999999G"], ["0M", "1000000M", "01G"]),  # 1-6 digits, no leading 0
    (SITE, "peer_tls_ca_file", ["/" + "a" * 4095], ["/" + "a" * 4096, ""]),  # a path of 4096 characters at most
    (SITE, "backup_full_calendar", ["*-*-* 01:00:00"], [" *-*-* 01:00:00", "*-*-* 01:00:00 ", "*-*-*  01:00:00"]),
    (SECRET, "rabbitmq_erlang_cookie", ["a" * 20, "a" * 255], ["a" * 19, "a" * 256]),
    (SECRET, "haproxy_tls_pem", [PEM_CERT + PEM_KEY, PEM_KEY + PEM_CERT],
     [(PEM_CERT, "lacks"), (PEM_KEY, "lacks"), (PEM_CERT + PEM_KEY + "é", "neither printable")]),
]


@pytest.mark.parametrize("table,key,legal,illegal", EDGES, ids=[r[1] for r in EDGES])
def test_every_limit_at_its_edge(table, key, legal, illegal):
    kind = table[key].kind
    for value in legal:
        assert list(problems(key, kind, value)) == [], (key, value)
    for bad in illegal:
        value, fragment = bad if isinstance(bad, tuple) else (bad, "")
        found = list(problems(key, kind, value))
        assert found and fragment in found[0][1], (key, value, found)


def test_a_controller_name_of_63_characters_is_the_longest():
    from config.schema import HOST_NAME

    assert HOST_NAME.why("n" * 63) is None and HOST_NAME.why("a" + "-" * 61 + "b") is None
    assert HOST_NAME.why("n" * 64) is not None


def test_an_error_line_shows_a_value_of_60_characters_whole_and_cuts_a_longer_one():
    from config.schema import show

    assert show("a" * 58) == repr("a" * 58)  # 60 with its quotes
    assert show("a" * 59) == repr("a" * 59)[:57] + "..." and len(show("a" * 59)) == 60
