"""The deploy's decisions, offline: what to bootstrap, whom to join, which SQL and rabbitmqctl
commands to run, how facts are parsed. The lab tests run the same code against real nodes."""

import base64
import hashlib

import pytest

from facts.galera import GaleraNode
from facts.host import FileStates, ServiceStates
from facts.rabbitmq import RabbitmqCluster
from operations.galera import account_statements, native_hash
from operations.rabbitmq import definition_commands, password_matches, removed_members, seed_node, stuck

ORDER = ["node01", "node02", "node03"]
SYNCED = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_cluster_size": "3"}
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
ZERO = "00000000-0000-0000-0000-000000000000"


def test_rabbitmq_forgets_only_members_the_inventory_dropped():
    seed = {"running": True, "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03", "rabbit@node04"]}
    assert removed_members(seed, ORDER) == ["rabbit@node04"]
    assert removed_members(seed, ORDER + ["node04"]) == []
    assert removed_members({}, ORDER) == []


def test_galera_node_fact_parses_status_and_grastate():
    out = ["installed=yes", "active=yes", "wsrep_cluster_size=3", "wsrep_cluster_status=Primary",
           "wsrep_local_state_comment=Synced", f"grastate_uuid={UUID}", "grastate_seqno=-1",
           "grastate_safe_to_bootstrap=0", f"recovered_position={UUID}:62", "end=yes"]
    fact = GaleraNode().process(out)
    assert fact["installed"] and fact["active"] and fact["recovered_position"] == f"{UUID}:62"
    assert fact["wsrep_local_state_comment"] == "Synced" and fact["grastate_uuid"] == UUID
    assert fact["error"] is None
    assert GaleraNode().process(["installed=no", "end=yes"]) == {"installed": False, "active": False, "error": None}
    # cut short (a lost connection, a killed shell): unknown, not "stopped" or "not installed"
    cut = GaleraNode().process(out[:-1])
    assert cut["error"] and cut["installed"] is None and "wsrep_cluster_status" not in cut


# --- Galera: accounts -----------------------------------------------------------------------

DATA = {"mariadb_check_user": "haproxy", "internal_network": "10.77.0.0/24", "mariadb_admin_user": "admin",
        "galera_sst_method": "mariabackup"}
PASSWORDS = {"mariadb_admin_password": "s3cret-admin", "mariadb_sst_password": "s3cret-sst"}
ADDRS = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


def test_native_hash_is_mysqls():
    # MySQL's documented example: PASSWORD('mypass')
    assert native_hash("mypass") == "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"


def test_accounts_unknown_state_creates_everything_without_cleartext():
    sql = account_statements({"error": "not read"}, DATA, ADDRS, PASSWORDS)
    text = "\n".join(sql)
    for addr in ADDRS:
        assert f"CREATE USER IF NOT EXISTS 'haproxy'@'{addr}'" in sql
    assert "'admin'@'10.77.0.0/255.255.255.0'" in text and "'sst'@'localhost'" in text
    assert "GRANT ALL PRIVILEGES ON *.* TO 'admin'@'localhost' WITH GRANT OPTION" in sql
    assert "DROP DATABASE IF EXISTS test" in sql
    assert "s3cret" not in text  # only hashes travel
    assert native_hash("s3cret-admin") in text


def test_accounts_in_place_make_no_statement():
    users = {f"haproxy@{a}": "" for a in ADDRS}
    users |= {"admin@localhost": native_hash("s3cret-admin"),
              "admin@10.77.0.0/255.255.255.0": native_hash("s3cret-admin"),
              "sst@localhost": native_hash("s3cret-sst")}
    assert account_statements({"error": None, "users": users, "test_db": False}, DATA, ADDRS, PASSWORDS) == []
    # a changed password, an anonymous account and a test database are put right
    users["sst@localhost"] = native_hash("old")
    users["@localhost"] = ""
    sql = account_statements({"error": None, "users": users, "test_db": True}, DATA, ADDRS, PASSWORDS)
    assert any(s.startswith("ALTER USER 'sst'@'localhost'") for s in sql)
    assert "DROP USER IF EXISTS ''@'localhost'" in sql and "DROP DATABASE IF EXISTS test" in sql
    assert not any("admin" in s for s in sql)


# --- RabbitMQ --------------------------------------------------------------------------------

RDATA = {"rabbitmq_user": "openstack", "rabbitmq_vhost": "openstack", "rabbitmq_queue_type": "quorum"}


def rabbit_hash(password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_password_hash_check_is_rabbits_sha256():
    assert password_matches("pw", rabbit_hash("pw"))
    assert not password_matches("other", rabbit_hash("pw"))


def test_seed_is_the_first_clustered_node_else_the_first():
    fresh = {n: {"running": True, "nodes": [f"rabbit@{n}"]} for n in ORDER}
    assert seed_node(fresh, ORDER) == "node01"
    clustered = {"node01": {"running": False, "nodes": []},
                 "node02": {"running": True, "nodes": ["rabbit@node02", "rabbit@node03"]}}
    assert seed_node(clustered, ORDER) == "node02"


def test_definitions_unknown_state_are_safe_to_repeat_and_hide_the_password():
    cmds = [str(c) for c in definition_commands({"error": "not read"}, RDATA, "pw-123")]
    text = "\n".join(cmds)
    assert "add_vhost openstack" in text and "set_permissions -p openstack openstack" in text
    assert "delete_user guest" in text and "pw-123" not in text  # printed form is masked
    assert "ha-all" not in text


def test_definitions_in_place_make_no_command_and_mirrored_adds_the_policy():
    defs = {
        "users": [{"name": "openstack", "password_hash": rabbit_hash("pw-123"), "tags": ["administrator"]}],
        "vhosts": [{"name": "openstack"}],
        "permissions": [{"user": "openstack", "vhost": "openstack", "configure": ".*", "write": ".*", "read": ".*"}],
        "policies": [],
    }
    assert definition_commands(defs, RDATA, "pw-123") == []
    cmds = [str(c) for c in definition_commands(defs, RDATA | {"rabbitmq_queue_type": "mirrored"}, "pw-123")]
    assert len(cmds) == 1 and "set_policy -p openstack --apply-to queues ha-all" in cmds[0]
    assert any("change_password openstack" in str(c) for c in definition_commands(defs, RDATA, "new"))


def test_rabbitmq_cluster_fact_reads_the_recorded_cluster():
    out = ["installed", "running", "broker", "{[rabbit@node01,rabbit@node02,rabbit@node03],[rabbit@node01,rabbit@node02]}.",
           "", "__end"]
    fact = RabbitmqCluster().process(out)
    assert fact == {"installed": True, "running": True, "broker": True,
                    "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"], "error": None}
    fresh = RabbitmqCluster().process(["missing", "stopped", "", "__end"])
    assert fresh == {"installed": False, "running": False, "broker": False, "nodes": [], "error": None}
    cut = RabbitmqCluster().process(out[:2])
    assert cut["error"] and cut["running"] is None


def test_a_broker_whose_unit_is_active_but_app_is_not_running_is_stuck():
    states = {"node01": {"running": True, "broker": True}, "node02": {"running": True, "broker": False},
              "node03": {"running": False, "broker": False}, "node04": None}
    assert stuck(states) == ["node02"]


# --- one-round-trip facts --------------------------------------------------------------------


def test_file_states_and_service_states_parse():
    sha = "0123abcd" * 5
    files = FileStates().process([f"F root haproxy 640 {sha} /etc/haproxy/haproxy.cfg", "M /etc/memcached.conf"])
    assert files == {"files": {"/etc/haproxy/haproxy.cfg": {"user": "root", "group": "haproxy", "mode": "640",
                                                            "sha1": sha},
                               "/etc/memcached.conf": None}, "error": None}
    units = ServiceStates().process(["haproxy active enabled pending", "keepalived inactive not-found"])
    assert units["units"]["keepalived"] == {"active": "inactive", "enabled": "not-found", "pending": False}
    assert units["units"]["haproxy"]["pending"] is True and units["error"] is None
    assert FileStates().process([])["error"] and ServiceStates().process([])["error"]


HOSTILE = ["a; touch /tmp/x", "$(id)", "`id`", "a'b\"c", "x\ny", "a b"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_command_builders_quote_every_value(bad):
    """Preflight refuses these values; the builders quote them anyway (defence in depth)."""
    import shlex

    from operations.galera_plan import bootstrap_command
    cmds = [str(c) for c in definition_commands({"error": "not read"}, RDATA | {"rabbitmq_user": bad, "rabbitmq_vhost": bad}, "pw")]
    cmds.append(bootstrap_command("node01", [bad], (None, None)))
    for cmd in cmds:  # every occurrence of the value is its quoted form
        assert bad not in cmd.replace(shlex.quote(bad), "")
    assert sum(shlex.quote(bad) in c for c in cmds) >= 5
    # a node name read from a controller's own files is only used when well formed
    assert removed_members({"nodes": ["rabbit@node01", f"rabbit@{bad}"]}, ["node01"]) == []
