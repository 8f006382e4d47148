"""Preflight: one test per rule, each with a bad inventory; and the CLIs on bad inventories."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unitkit import FAKE_SECRETS, PROD, PY, REPO, prod_data, secrets_env, variant, write_inventory
from config.preflight import check
from config.secrets import SECRETS
from config.site import load_inventory

G = "controllers"


def run(hosts=None, group=None, secrets=None, **changes):
    """check() on prod.py's data with changes; all (fake) secrets unless given."""
    h, g = prod_data()
    hosts = h if hosts is None else hosts
    group = g if group is None else group
    group.update(changes)
    return check(hosts, group, secrets=dict(FAKE_SECRETS) if secrets is None else secrets)


def find(problems, level, where, key):
    """The one problem of that level for (where, key); its printed line is checked too."""
    hits = [p for p in problems if p.level == level and p.where == where and p.key == key]
    assert len(hits) == 1, f"expected one {level} for {where}/{key}, got: " + "; ".join(map(str, problems))
    line = str(hits[0])
    assert line.startswith(f"{level}: {where}: {key}: "), line
    assert "fix:" in line and line.split("fix:", 1)[1].strip(), line
    assert "\n" not in line
    return hits[0]


def only(report, level, where, key):
    """That problem, and it is the only error (and, for a warning, the only problem)."""
    p = find(report.problems, level, where, key)
    if level == "error":
        assert report.errors == [p], [str(x) for x in report.errors]
    else:
        assert report.problems == [p], [str(x) for x in report.problems]
    return p


def hosts_with(index, **changes):
    hosts, _ = prod_data()
    hosts[index][1].update(changes)
    return hosts


def test_clean_prod_with_all_secrets_has_no_problem():
    hosts, group = load_inventory(PROD)
    report = check(hosts, group, secrets=dict(FAKE_SECRETS))
    assert report.problems == []


def test_clean_prod_with_secrets_from_the_environment(monkeypatch):
    from config.secrets import env_name

    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(env_name(name), value)
    hosts, group = load_inventory(PROD)
    assert check(hosts, group).problems == []


def test_vip_outside_internal_network():
    p = only(run(vip="100.2.31.40"), "error", G, "vip")
    assert "100.2.30.0/24" in str(p)


def test_vip_equal_to_a_node_address():
    p = only(run(vip="100.2.30.42"), "error", "node02", "address")
    assert "VIP" in str(p)


def test_duplicate_node_names():
    hosts, _ = prod_data()
    hosts[2] = ("node02", hosts[2][1])
    p = only(run(hosts=hosts), "error", "node02", "name")
    assert "2 controllers" in str(p)


def test_duplicate_addresses():
    p = only(run(hosts=hosts_with(2, address="100.2.30.42")), "error", "node03", "address")
    assert "node02" in str(p)


@pytest.mark.parametrize("vrid", [0, 256])
def test_virtual_router_id_out_of_range(vrid):
    p = only(run(keepalived_virtual_router_id=vrid), "error", G, "keepalived_virtual_router_id")
    assert "1-255" in str(p)


def test_virtual_router_id_51_is_a_warning_only():
    report = run(keepalived_virtual_router_id=51)
    assert report.errors == []
    only(report, "warning", G, "keepalived_virtual_router_id")


def test_duplicate_vrrp_priorities():
    p = only(run(hosts=hosts_with(1, vrrp_priority=150)), "error", "node02", "vrrp_priority")
    assert "node01" in str(p)


def test_vrrp_auth_pass_missing():
    secrets = {k: v for k, v in FAKE_SECRETS.items() if k != "vrrp_auth_pass"}
    p = only(run(secrets=secrets), "error", G, "vrrp_auth_pass")
    assert "HA_SECRET_VRRP_AUTH_PASS" in str(p)


def test_vrrp_auth_pass_missing_is_a_warning_when_not_required():
    hosts, group = prod_data()
    secrets = {k: v for k, v in FAKE_SECRETS.items() if k != "vrrp_auth_pass"}
    report = check(hosts, group, secrets=secrets, secrets_required=False)
    assert report.errors == []
    only(report, "warning", G, "vrrp_auth_pass")


def test_vrrp_auth_pass_of_nine_characters():
    p = only(run(secrets={**FAKE_SECRETS, "vrrp_auth_pass": "123456789"}), "error", G, "vrrp_auth_pass")
    assert "8" in str(p)
    assert "123456789" not in str(p), "the secret itself must not be printed"
    assert run(secrets={**FAKE_SECRETS, "vrrp_auth_pass": "12345678"}).problems == []


def test_the_monitoring_accounts_password_missing_names_the_key_and_the_fix():
    secrets = {k: v for k, v in FAKE_SECRETS.items() if k != "rabbitmq_monitor_password"}
    p = only(run(secrets=secrets), "error", G, "rabbitmq_monitor_password")
    assert "secret missing" in p.message
    assert "add rabbitmq_monitor_password to the secrets file or set HA_SECRET_RABBITMQ_MONITOR_PASSWORD" in str(p)


@pytest.mark.parametrize("name", sorted(set(SECRETS) - {"vrrp_auth_pass"}))
def test_other_secret_missing(name):
    secrets = {k: v for k, v in FAKE_SECRETS.items() if k != name}
    only(run(secrets=secrets), "error", G, name)


def test_fewer_than_three_controllers_is_an_error():
    hosts, _ = prod_data()
    p = only(run(hosts=hosts[:2]), "error", G, "controllers")
    assert "at least 3" in str(p)


def test_four_controllers_is_a_warning_not_an_error():
    hosts, _ = prod_data()
    hosts.append(("node04", {"address": "100.2.30.44", "vrrp_priority": 120}))
    report = run(hosts=hosts)
    assert report.errors == []
    only(report, "warning", G, "controllers")


def test_two_listeners_on_the_same_port():
    p = only(run(services={"octavia_api": {"port": 5000}}), "error", G, "services.octavia_api.port")
    assert "keystone_internal" in str(p)


def test_unknown_group_key_suggests_the_right_one():
    p = only(run(vip_interfce="enp8s0f0"), "error", G, "vip_interfce")
    assert "did you mean vip_interface" in str(p)


def test_unknown_group_key_from_an_inventory_file(tmp_path):
    hosts, group = prod_data()
    group["vip_interfce"] = group.pop("vip_interface")
    path = write_inventory(tmp_path, hosts, group)
    h, g = load_inventory(path)
    report = check(h, g, secrets=dict(FAKE_SECRETS))
    p = only(report, "error", G, "vip_interfce")
    assert "did you mean vip_interface" in str(p)


def test_unknown_host_key():
    p = only(run(hosts=hosts_with(1, vrrp_prio=140)), "error", "node02", "vrrp_prio")
    assert "did you mean vrrp_priority" in str(p)


def test_site_key_on_a_host():
    only(run(hosts=hosts_with(0, vip="100.2.30.40")), "error", "node01", "vip")


def test_host_missing_address():
    hosts, _ = prod_data()
    del hosts[1][1]["address"]
    only(run(hosts=hosts), "error", "node02", "address")


def test_mysql_check_with_a_port_other_than_the_database_port():
    p = only(run(mariadb_check_method="mysql-check", mariadb_check_port=9200), "error", G, "mariadb_check_port")
    assert "httpchk" in str(p)


def test_httpchk_on_the_database_port():
    p = only(run(mariadb_check_method="httpchk", mariadb_check_port=3306), "error", G, "mariadb_check_port")
    assert "9200" in str(p)


def test_httpchk_on_its_own_port_is_fine():
    assert run(mariadb_check_method="httpchk", mariadb_check_port=9200).problems == []


def test_the_default_check_is_httpchk_and_the_articles_mysql_check_still_passes():
    assert run().problems == []  # defaults: httpchk on 9200
    assert run(mariadb_check_method="mysql-check", mariadb_check_port=3306).problems == []


def test_services_entry_with_an_unknown_field():
    p = only(run(services={"horizon": {"prot": 8080}}), "error", G, "services")
    assert "horizon" in str(p) and "'prot'" in str(p)


def test_site_service_without_port():
    p = only(run(services={"octavia_api": {"mode": "http"}}), "error", G, "services")
    assert "octavia_api" in str(p) and "port" in str(p)


def test_unknown_choice():
    p = only(run(rabbitmq_queue_type="classic"), "error", G, "rabbitmq_queue_type")
    assert "quorum" in str(p)


def test_every_problem_at_once():
    hosts = hosts_with(1, vrrp_priority=150)
    report = run(hosts=hosts, vip="10.0.0.1", keepalived_virtual_router_id=0, vip_interfce="x")
    keys = {(p.where, p.key) for p in report.errors}
    assert keys == {(G, "vip"), (G, "keepalived_virtual_router_id"), (G, "vip_interfce"), ("node02", "vrrp_priority")}


# --- the command lines ---------------------------------------------------------------------


def cli(*args, secrets=FAKE_SECRETS):
    return subprocess.run(
        [PY, *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=secrets_env(secrets)
    )


def test_preflight_cli_bad_inventory(tmp_path):
    inv = variant(tmp_path, vip="100.2.31.40", vip_interfce="enp8s0f0", keepalived_virtual_router_id=51)
    proc = cli("-m", "config.preflight", str(inv))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("preflight: 2 error(s)")
    problems = lines[:-1]
    assert len(problems) == 4, lines
    # the test certificate names prod.py's VIP, not this one (issue 24)
    assert sum(l.startswith(f"warning: {G}: haproxy_tls_pem: the certificate names neither VIP (100.2.31.40)") for l in problems) == 1
    assert sum(l.startswith(f"error: {G}: vip: ") for l in problems) == 1
    assert sum(l.startswith(f"error: {G}: vip_interfce: ") for l in problems) == 1
    assert sum(l.startswith(f"warning: {G}: keepalived_virtual_router_id: ") for l in problems) == 1
    assert all("fix:" in l for l in problems)


def test_preflight_cli_prod_ok_with_secrets():
    proc = cli("-m", "config.preflight", str(PROD))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "preflight: ok (3 controllers, 0 warning(s))"


def test_preflight_cli_prod_without_secrets_fails():
    proc = cli("-m", "config.preflight", str(PROD), secrets={})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert sum(l.startswith("error: ") for l in proc.stderr.splitlines()) == len(SECRETS)


@pytest.mark.parametrize("content", ["x = 1\n", "controllers = (\n"], ids=["no-controllers", "syntax-error"])
def test_preflight_cli_unreadable_inventory(tmp_path, content):
    inv = tmp_path / "broken.py"
    inv.write_text(content)
    proc = cli("-m", "config.preflight", str(inv))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and str(inv) in proc.stderr


def test_render_cli_bad_inventory_writes_nothing(tmp_path):
    inv = variant(tmp_path, keepalived_virtual_router_id=256)
    out = tmp_path / "out"
    proc = cli("-m", "config.render", str(inv), str(out))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert f"error: {G}: keepalived_virtual_router_id:" in proc.stderr
    assert "nothing rendered" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("content", ["x = 1\n", "controllers = (\n"], ids=["no-controllers", "syntax-error"])
def test_render_cli_unreadable_inventory(tmp_path, content):
    inv = tmp_path / "broken.py"
    inv.write_text(content)
    out = tmp_path / "out"
    proc = cli("-m", "config.render", str(inv), str(out))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_render_cli_missing_inventory(tmp_path):
    out = tmp_path / "out"
    proc = cli("-m", "config.render", str(tmp_path / "nope.py"), str(out))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_make_render_prod(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        # -o venv and PY: this interpreter, never a virtualenv made or pip run (the unit tier is hermetic)
        ["make", "--no-print-directory", "-o", "venv", "render", f"PY={sys.executable}",
         "INVENTORY=inventories/prod.py", f"OUT={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=secrets_env({}),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for node in ("node01", "node02", "node03"):
        assert f"{node}: 24 files under {out / node}" in proc.stdout
        assert len([p for p in (out / node).rglob("*") if p.is_file()]) == 24
    assert "bind 100.2.30.41:1984" in (out / "node01/etc/haproxy/haproxy.cfg").read_text()


def test_services_not_a_dict():
    p = only(run(services=["octavia_api"]), "error", G, "services")
    assert "is not a dict" in str(p)


def test_a_port_a_site_key_holds_is_not_set_in_services():
    # One source: the mariadb and rabbitmq_management listeners' ports are their daemons' keys.
    p = only(run(services={"mariadb": {"port": 3307}}), "error", G, "services.mariadb.port")
    assert "mariadb_port" in str(p)
    p = only(run(services={"rabbitmq_management": {"backend_port": 15673}}), "error", G, "services.rabbitmq_management.backend_port")
    assert "rabbitmq_management_port" in str(p)


def test_mariadb_port_on_another_listeners_port():
    # mariadb_port moves the mariadb listener too, so it can collide with an API's port.
    p = only(run(mariadb_port=5000), "error", G, "services.mariadb.port")
    assert "keystone_internal" in str(p)


# --- accounts of different privileges never share a name -----------------------------------

@pytest.mark.parametrize("changes,key,says", [
    ({"rabbitmq_admin_user": "openstack"}, "rabbitmq_admin_user", "services' account"),
    ({"rabbitmq_admin_user": "os", "rabbitmq_user": "os"}, "rabbitmq_admin_user", "services' account"),
    ({"rabbitmq_admin_user": "guest"}, "rabbitmq_admin_user", "deletes"),
    ({"rabbitmq_monitor_user": "openstack"}, "rabbitmq_monitor_user", "services' account"),
    ({"rabbitmq_monitor_user": "admin"}, "rabbitmq_monitor_user", "management administrator"),
    ({"rabbitmq_monitor_user": "guest"}, "rabbitmq_monitor_user", "deletes"),
    ({"mariadb_admin_user": "sst"}, "mariadb_admin_user", "mariabackup"),
    ({"mariadb_admin_user": "clustercheck"}, "mariadb_admin_user", "Galera check"),
    ({"mariadb_check_user": "root"}, "mariadb_check_user", "root"),
    ({"mariadb_check_user": "admin"}, "mariadb_check_user", "also mariadb_admin_user"),
])
def test_accounts_of_different_privileges_never_share_a_name(changes, key, says):
    p = only(run(**changes), "error", G, key)
    assert says in p.message


def test_distinct_account_names_pass():
    assert not run(rabbitmq_admin_user="mqadmin", mariadb_admin_user="dba", mariadb_check_user="lb",
                   rabbitmq_monitor_user="mqmon").errors
