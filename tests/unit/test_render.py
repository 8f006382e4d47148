"""Offline render of inventories/prod.py: the files, the article's HAProxy listeners, secrets."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from unitkit import (
    FAKE_SECRETS,
    NODE_FILES,
    PROD,
    governing_defaults,
    listens,
    parse_haproxy,
    render_inventory,
    variant,
)
from config.files import FILES, managed_files
from config.preflight import check
from config.secrets import PLACEHOLDERS, SECRETS, env_name, load_secrets, mask
from config.site import build_site, load_inventory

OBSERVE = "observe layer4 error-limit 2 on-error mark-down"  # failover: connection errors mark a server down
NO_L7_RETRY = "http-request disable-l7-retry if { method POST PATCH }"
VIP = "100.2.30.40"
NODES = {"node01": "100.2.30.41", "node02": "100.2.30.42", "node03": "100.2.30.43"}
CHECK = "check inter 2000 rise 2 fall 5"
DEL_IF_SSL = "http-request del-header X-Forwarded-Proto if { ssl_fc }"
SET_IF_SSL = "http-request set-header X-Forwarded-Proto https if { ssl_fc }"

# The article's listeners: name -> (port, http-request rules in order).
ARTICLE_HTTP_LISTENERS = {
    "rabbitmq_management": (15672, []),
    "keystone_internal": (5000, [DEL_IF_SSL]),
    "keystone_admin": (35357, [DEL_IF_SSL]),
    "glance_registry": (9191, []),
    "glance_api": (9292, []),
    "nova_api": (8774, [DEL_IF_SSL]),
    "nova_metadata": (8775, [DEL_IF_SSL]),
    "placement_api": (8780, ["http-request del-header X-Forwarded-Proto"]),
    "nova_novncproxy": (6080, [DEL_IF_SSL, SET_IF_SSL]),
    "neutron_server": (9696, []),
    "horizon": (80, [DEL_IF_SSL]),
    "cinder_api": (8776, [DEL_IF_SSL]),
    "heat_api": (8004, [DEL_IF_SSL]),
    "heat_api_cfn": (8000, [DEL_IF_SSL]),
}

# The article's own secrets must never be rendered from this repository, and are not written
# in it either: the tests recognise them by SHA-256 (its `stats auth openstack:...` password,
# its keepalived auth_pass, and that auth_pass cut to keepalived's 8 characters).
ARTICLE_SECRET_SHA256 = {
    "6b35e70b6ffc211dd62ef18d7129e3dc9f0f9f08de40a7dcc8857e328633ac0c",
    "2dab3f7c939ce2f90b87b057897a09846ed87471886c49a266fd338afb49d3ea",
    "d4c46a1b17e072a65d71690a49d61d8ec172e5a814069d5bb4907d08c544bd5c",
}


def article_secrets_in(text: str) -> list[str]:
    """Words of a rendered file (split at whitespace, ':' and quotes) that are an article secret."""
    words = set(re.split(r"[\s:'\"]+", text))
    return [w for w in words if hashlib.sha256(w.encode()).hexdigest() in ARTICLE_SECRET_SHA256]


@pytest.fixture(scope="module")
def node01_cfg(prod_render):
    return parse_haproxy((prod_render / "node01" / "etc/haproxy/haproxy.cfg").read_text())


def test_each_node_gets_its_files(prod_render):
    for node in NODES:
        files = {str(p.relative_to(prod_render / node)) for p in (prod_render / node).rglob("*") if p.is_file()}
        assert files == NODE_FILES, node
    assert {p.name for p in prod_render.iterdir()} == set(NODES)
    # the apt pins file only with package_versions, the backup files only with backup_enabled, monitoring's ten only
    # with monitoring_enabled, the peers' TLS files (3 Galera, 4 RabbitMQ) only with galera_tls / rabbitmq_tls: not in the prod render
    assert len(FILES) == 49


def test_render_returns_the_written_paths(tmp_path):
    written = render_inventory(PROD, tmp_path)
    assert set(written) == set(NODES)
    for node, paths in written.items():
        assert {str(p.relative_to(tmp_path / node)) for p in paths} == NODE_FILES


def test_global_and_first_defaults_as_in_the_article(node01_cfg):
    kinds = [(s.kind, s.name) for s in node01_cfg]
    assert kinds[0] == ("global", "")
    assert kinds[1] == ("defaults", "")
    g = node01_cfg[0]
    for line in ("chroot /var/lib/haproxy", "user haproxy", "group haproxy", "daemon", "maxconn 4000",
                 "log 100.2.30.41:5140 local1"):
        assert g.has(line), line
    assert any(v.startswith("socket ") for v in g.values("stats"))
    d = node01_cfg[1]
    # Failover (docs/failover.md "Failover"): every retry to another server, and a request sent again
    # after a failed connection or an empty response (the article: redispatch on the last);
    # a connection not made in 500 ms is a failed one (the article: 10 s).
    assert d.has("option redispatch 1") and d.has("retry-on conn-failure empty-response")
    for line in ("log global", "mode http", "option httplog", "option forwardfor",
                 "option srvtcpka", "retries 3", "timeout http-request 10s", "timeout queue 1m", "timeout connect 500ms",
                 "timeout client 1m", "timeout server 1m", "timeout check 10s"):
        assert d.has(line), line


def test_stats_listener_on_the_nodes_own_address_with_auth(prod_render):
    for node, addr in NODES.items():
        sections = parse_haproxy((prod_render / node / "etc/haproxy/haproxy.cfg").read_text())
        stats = listens(sections)["stats"]
        assert stats.values("bind") == [f"{addr}:1984"], node
        for line in ("stats enable", "stats uri /", "stats refresh 15s", r"stats realm Haproxy\ Stats",
                     'http-request auth realm "Haproxy Stats" unless { http_auth(openstack_ha_stats) }'):
            assert stats.has(line), (node, line)
        # the account in a file of its own, loaded with haproxy.cfg (the unit's drop-in)
        users = parse_haproxy((prod_render / node / "etc/haproxy/openstack-ha-stats.cfg").read_text())
        assert [(u.kind, u.name, u.lines) for u in users] == [
            ("userlist", "openstack_ha_stats", ["user openstack insecure-password __HAPROXY_STATS_PASSWORD__"])]
        dropin = (prod_render / node / "etc/systemd/system/haproxy.service.d/openstack-ha.conf").read_text()
        assert 'Environment="EXTRAOPTS=-S /run/haproxy-master.sock -f /etc/haproxy/openstack-ha-stats.cfg"\n' in dropin


@pytest.mark.parametrize("name", sorted(ARTICLE_HTTP_LISTENERS))
def test_article_http_listener(node01_cfg, name):
    """The article's listener, with TLS on the VIP (haproxy_tls, the default; the article's
    own, TLS off: test_tls.py): the same servers, rules and port, `ssl crt` on the bind, the
    servers told the scheme; horizon takes TLS on 443 and redirects its port 80."""
    port, rules = ARTICLE_HTTP_LISTENERS[name]
    sec = listens(node01_cfg)[name]
    tls = " ssl crt /etc/haproxy/openstack-ha.pem"
    if name == "rabbitmq_management":  # an operator's tool, not an OpenStack API: as it was
        assert sec.values("bind") == [f"{VIP}:{port}"]
    elif name == "horizon":
        assert sec.values("bind") == [f"{VIP}:443{tls}", f"{VIP}:80"]
        rules = ["http-request redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]%[capture.req.uri] code 301 if !{ ssl_fc }", *rules, SET_IF_SSL]
    else:
        assert sec.values("bind") == [f"{VIP}:{port}{tls}"]
        rules = rules if rules[-1:] == [SET_IF_SSL] else [*rules, SET_IF_SSL]
    # Failover: a POST or PATCH is sent again only after a failed connection (first, after a redirect).
    at = 1 if name == "horizon" else 0
    rules = rules[:at] + [NO_L7_RETRY] + rules[at:] if name != "rabbitmq_management" else [NO_L7_RETRY, *rules]
    assert [l for l in sec.lines if l.startswith("http-request ")] == rules
    fall = 2 if name == "horizon" else 5
    assert sec.values("server") == [
        f"{n} {a}:{port} check inter 2000 rise 2 fall {fall} {OBSERVE}" for n, a in NODES.items()
    ]
    assert sec.values("balance") == (["source"] if name == "horizon" else [])
    assert not sec.values("mode"), "HTTP listeners take mode http from defaults"
    d = governing_defaults(node01_cfg, sec)
    assert d.has("option forwardfor") and d.has("mode http")


def test_no_listener_beyond_the_article(node01_cfg):
    assert set(listens(node01_cfg)) == set(ARTICLE_HTTP_LISTENERS) | {"stats", "mariadb"}


def test_mariadb_listener_as_in_the_article(node01_cfg):
    # The article's listener, with the Galera-aware HTTP check (the default) instead of its
    # mysql-check (kept as a variant: test_binaries.test_variant_mariadb_mysql_check), and
    # one writer kept when a server comes back or goes down (docs/design.md, "Why the database has one writer").
    sec = listens(node01_cfg)["mariadb"]
    assert sec.values("bind") == [f"{VIP}:3306"]
    assert sec.values("mode") == ["tcp"]
    assert sec.values("option") == ["tcplog", "tcpka", "httpchk"]
    # Failover: the writer's loss seen within 1 s x 2 checks, each bounded by 1 s; a connection
    # to a server given 1.5 s (above a SYN resend), not the API listeners' 500 ms.
    assert sec.values("timeout") == ["client 3600s", "server 3600s", "check 1s", "connect 1500ms"]
    down = f"on-marked-down shutdown-sessions {OBSERVE}"
    check = "check inter 1000 rise 2 fall 2"
    assert sec.values("server") == [
        f"node01 100.2.30.41:3306 {check} port 9200 on-marked-up shutdown-backup-sessions {down}",
        f"node02 100.2.30.42:3306 {check} port 9200 backup {down}",
        f"node03 100.2.30.43:3306 {check} port 9200 backup {down}",
    ]
    # Under a second defaults section, the one without option forwardfor.
    defaults = [s for s in node01_cfg if s.kind == "defaults"]
    assert len(defaults) == 2
    d = governing_defaults(node01_cfg, sec)
    assert d is defaults[1]
    assert not d.has("option forwardfor")
    for line in ("log global", "option redispatch 1", "option httplog", "option srvtcpka", "retries 3",
                 "timeout connect 500ms"):
        assert d.has(line), line
    # Every HTTP listener comes before the second defaults.
    for name in ARTICLE_HTTP_LISTENERS:
        assert governing_defaults(node01_cfg, listens(node01_cfg)[name]) is defaults[0]


def test_other_nodes_same_listeners_own_stats_address(prod_render, node01_cfg):
    ref = {n: s.lines for n, s in listens(node01_cfg).items() if n != "stats"}
    for node in ("node02", "node03"):
        sections = parse_haproxy((prod_render / node / "etc/haproxy/haproxy.cfg").read_text())
        assert {n: s.lines for n, s in listens(sections).items() if n != "stats"} == ref


def test_keepalived_conf_node01(prod_render):
    text = (prod_render / "node01" / "etc/keepalived/keepalived.conf").read_text()
    lines = [" ".join(l.split()) for l in text.splitlines()]
    for line in ("state BACKUP", "nopreempt", "interface enp8s0f0", "virtual_router_id 121", "priority 150",
                 "advert_int 1", "100.2.30.40/24 dev enp8s0f0", "auth_type PASS", "include /etc/keepalived/openstack-ha-auth.conf",
                 'script "/etc/keepalived/check_alive.sh"', "interval 2", "fall 2", "rise 10",
                 "script_user root", "enable_script_security", "check_alive"):
        assert line in lines, line
    assert "unicast_src_ip" not in text and not any(l.startswith("auth_pass") for l in lines)
    assert lines.count("include /etc/keepalived/openstack-ha-auth.conf") == 1  # one instance, one include
    auth = (prod_render / "node01" / "etc/keepalived/openstack-ha-auth.conf").read_text()
    assert [l for l in auth.splitlines() if not l.startswith("#")] == ["auth_pass __VRRP__"]
    prios = {
        n: re.search(r"priority (\d+)", (prod_render / n / "etc/keepalived/keepalived.conf").read_text()).group(1)
        for n in NODES
    }
    assert prios == {"node01": "150", "node02": "140", "node03": "130"}


def test_galera_rabbit_memcached_bind_the_node_address(prod_render):
    for node, addr in NODES.items():
        root = prod_render / node
        galera = (root / "etc/mysql/mariadb.conf.d/99-openstack-galera.cnf").read_text()
        assert f"bind-address = {addr}" in galera
        assert "wsrep_cluster_address = gcomm://100.2.30.41,100.2.30.42,100.2.30.43" in galera
        assert f"wsrep_node_name = {node}" in galera
        assert "innodb_flush_log_at_trx_commit = 1" in galera
        assert f"-l {addr}" in (root / "etc/memcached.conf").read_text().splitlines()
        env = (root / "etc/rabbitmq/rabbitmq-env.conf").read_text().splitlines()
        assert f"NODENAME=rabbit@{node}" in env
        # the cluster ports on the node address, never 0.0.0.0 (config/firewall.py guards them too)
        assert f'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {{{addr.replace(".", ",")}}}"' in env
        assert f"wsrep_sst_receive_address = {addr}:4444" in galera
        assert f"gmcast.listen_addr=tcp://{addr}:4567; ist.recv_addr={addr}:4568" in galera
        epmd = (root / "etc/systemd/system/epmd.socket.d/openstack-ha.conf").read_text().splitlines()
        assert [l for l in epmd if l.startswith("ListenStream")] == ["ListenStream=", "ListenStream=127.0.0.1:4369", f"ListenStream={addr}:4369"]
        # every start of the broker bounded by systemd (rabbitmq_start_timeout), Debian's restart kept
        unit = (root / "etc/systemd/system/rabbitmq-server.service.d/openstack-ha.conf").read_text().splitlines()
        assert [l for l in unit if not l.startswith("#")] == ["[Service]", "TimeoutStartSec=120", "Restart=on-failure", "RestartSec=10"]
        assert f"listeners.tcp.1 = {addr}:5672" in (root / "etc/rabbitmq/rabbitmq.conf").read_text()
        assert "net.ipv4.ip_nonlocal_bind = 1" in (root / "etc/sysctl.d/60-openstack-ha.conf").read_text()


# --- secrets ---------------------------------------------------------------------------

# Which placeholder each rendered file must hold (mariadb_admin_password is used by the
# deploy's operations, not by any managed file).
SECRET_SITES = {
    # Each secret of the main configs in a file of its own (issue 24): haproxy.cfg,
    # keepalived.conf and galera.cnf hold none, --diff shows them.
    "etc/haproxy/openstack-ha-stats.cfg": {"haproxy_stats_password"},
    "etc/keepalived/openstack-ha-auth.conf": {"vrrp_auth_pass"},
    "etc/mysql/mariadb.conf.d/99-openstack-galera-sst.cnf": {"mariadb_sst_password"},
    "var/lib/rabbitmq/.erlang.cookie": {"rabbitmq_erlang_cookie"},
    "etc/haproxy/openstack-ha.pem": {"haproxy_tls_pem"},
    "etc/openstack-ha/rabbitmq-monitor.curlrc": {"rabbitmq_monitor_password"},
}


def test_rendered_files_hold_placeholders_not_secrets(prod_render):
    for node in NODES:
        for rel in NODE_FILES:
            text = (prod_render / node / rel).read_text()
            found = {name for name, ph in PLACEHOLDERS.items() if ph in text}
            assert found == SECRET_SITES.get(rel, set()), (node, rel, found)
            assert article_secrets_in(text) == [], (node, rel)
            assert "Undefined" not in text and "{{" not in text and "{%" not in text, (node, rel)
            for value in FAKE_SECRETS.values():
                assert value not in text
        cookie = (prod_render / node / "var/lib/rabbitmq/.erlang.cookie").read_text()
        assert cookie == PLACEHOLDERS["rabbitmq_erlang_cookie"]


def test_render_ignores_secrets_in_the_environment(tmp_path, monkeypatch):
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(env_name(name), value)
    render_inventory(PROD, tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for value in FAKE_SECRETS.values():
                assert value not in text, path


def test_deploy_rendering_uses_values_and_mask_restores_placeholders(monkeypatch):
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(env_name(name), value)
    hosts, group = load_inventory(PROD)
    secrets = load_secrets(group.get("secrets_file"))
    assert secrets == FAKE_SECRETS
    report = check(hosts, group, secrets=secrets)
    assert report.errors == []
    site = build_site(hosts, group)
    files = managed_files(site, "node01", secrets)
    assert len(files) == 24
    by_path = {f.path.lstrip("/"): f for f in files}
    assert set(by_path) == NODE_FILES
    for rel, f in by_path.items():
        expected = SECRET_SITES.get(rel, set())
        # The deploy installs the real values ...
        for name in SECRETS:
            assert (FAKE_SECRETS[name] in f.content) == (name in expected), (rel, name)
        assert f.secret == bool(expected), rel
        # ... and anything shown (diff, log) is masked: placeholders, never values.
        shown = mask(f.content, secrets)
        for value in FAKE_SECRETS.values():
            assert value not in shown, rel
        for name in expected:
            assert PLACEHOLDERS[name] in shown, (rel, name)
    assert "auth_pass Vr8pAss1\n" in by_path["etc/keepalived/openstack-ha-auth.conf"].content
    assert "user openstack insecure-password fake-stats-Zq81x\n" in by_path["etc/haproxy/openstack-ha-stats.cfg"].content
    # Masked deploy output is byte-identical to the offline render's placeholders.
    from config.secrets import PLACEHOLDERS as P

    offline = {f.path: f.content for f in managed_files(site, "node01", P)}
    assert {f.path: mask(f.content, secrets) for f in files} == offline


def test_mask_prefers_longer_values():
    secrets = {"rabbitmq_password": "abc", "haproxy_stats_password": "abcdef"}
    assert mask("x abcdef y abc", secrets) == "x __HAPROXY_STATS_PASSWORD__ y __RABBITMQ_PASSWORD__"


# --- stale connections: the kernel settings ---------------------------------------------

STALE_DEFAULTS = {"net.ipv4.tcp_keepalive_time": "10", "net.ipv4.tcp_keepalive_intvl": "3",
                  "net.ipv4.tcp_keepalive_probes": "3", "net.ipv4.tcp_retries2": "6"}


def _sysctl(root: Path) -> dict[str, str]:
    lines = (root / "etc/sysctl.d/60-openstack-ha.conf").read_text().splitlines()
    return dict(tuple(x.strip() for x in line.split("=", 1)) for line in lines if "=" in line and not line.startswith("#"))


def test_sysctl_defaults_bound_how_long_a_dead_connection_hangs(prod_render):
    got = _sysctl(prod_render / "node01")
    assert got == {"net.ipv4.ip_nonlocal_bind": "1", **STALE_DEFAULTS}


def test_a_site_sysctl_value_changes_that_key_and_keeps_the_others(tmp_path):
    inv = variant(tmp_path, sysctl={"net.ipv4.tcp_retries2": 8, "net.core.somaxconn": 4096})
    render_inventory(inv, tmp_path / "out")
    got = _sysctl(tmp_path / "out" / "node02")
    assert got == {"net.ipv4.ip_nonlocal_bind": "1", **STALE_DEFAULTS, "net.ipv4.tcp_retries2": "8",
                   "net.core.somaxconn": "4096"}


def test_server_keepalive_is_one_data_switch(tmp_path):
    inv = variant(tmp_path, haproxy_server_keepalive=False)
    render_inventory(inv, tmp_path / "out")
    cfg = parse_haproxy((tmp_path / "out" / "node01" / "etc/haproxy/haproxy.cfg").read_text())
    assert not any(s.has("option srvtcpka") for s in cfg if s.kind == "defaults")
    assert listens(cfg)["mariadb"].has("option tcpka")  # the database listener keeps its own


def test_article_secrets_are_recognised_by_their_hash():
    # The recogniser itself: a made-up secret whose hash is added is found, split from its user.
    word = "not-the-article-secret"
    ARTICLE_SECRET_SHA256.add(hashlib.sha256(word.encode()).hexdigest())
    try:
        assert article_secrets_in(f"    stats auth openstack:{word}\n") == [word]
        assert article_secrets_in(f"    auth_pass '{word}'\n") == [word]
    finally:
        ARTICLE_SECRET_SHA256.discard(hashlib.sha256(word.encode()).hexdigest())


def test_check_script_is_installed_where_keepalived_conf_runs_it(tmp_path):
    inv = variant(tmp_path, keepalived_check_script="/usr/local/sbin/ha-check-alive")
    render_inventory(inv, tmp_path / "out")
    root = tmp_path / "out" / "node01"
    assert (root / "usr/local/sbin/ha-check-alive").read_text().startswith("#!/bin/sh\n")
    assert not (root / "etc/keepalived/check_alive.sh").exists()
    assert 'script "/usr/local/sbin/ha-check-alive"' in (root / "etc/keepalived/keepalived.conf").read_text()


@pytest.mark.parametrize("changes", [
    {},
    {"monitoring_enabled": True, "backup_enabled": True, "firewall": True, "package_versions": {"haproxy": "2.6.12-1"}},
    {"firewall": False, "keepalived_serve_check": False, "mariadb_check_method": "tcp", "backup_enabled": False},
])
def test_the_paths_read_before_the_run_are_those_of_the_rendered_files(changes):
    """managed_paths() (what the pre-run bundle reads, before rendering) lists managed_files()'
    paths, in order, on every controller: a file missing there would be written on every run."""
    from config.files import managed_paths
    from unitkit import prod_data

    hosts, group = prod_data()
    site = build_site(hosts, {**group, **changes})
    for c in site.controllers:
        assert managed_paths(site, c.name) == [f.path for f in managed_files(site, c.name, FAKE_SECRETS)]
