"""The deploy's decisions, offline: what to bootstrap, whom to join, which SQL and rabbitmqctl
commands to run, how facts are parsed. The lab tests run the same code against real nodes."""

import base64
import hashlib

import pytest

from operations.common import FileStates, ServiceStates
from operations.galera import GaleraNode, GaleraStateError, account_statements, native_hash, plan, strangers
from operations.rabbitmq import RabbitmqCluster, definition_commands, password_matches, removed_members, seed_node

ORDER = ["node01", "node02", "node03"]
SYNCED = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_cluster_size": "3"}
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
ZERO = "00000000-0000-0000-0000-000000000000"


# --- Galera: bootstrap or join --------------------------------------------------------------


def test_fresh_controllers_bootstrap_the_first():
    states = {n: {"installed": False} for n in ORDER}
    p = plan(states, ORDER)
    assert (p.mode, p.anchor, p.synced) == ("bootstrap", "node01", frozenset())


def test_a_running_cluster_is_never_bootstrapped_again():
    # node01 is down, node02/03 form the Primary component: join, anchored on node02
    states = {"node01": {"installed": True, "active": False, "grastate_uuid": UUID},
              "node02": SYNCED, "node03": SYNCED}
    p = plan(states, ORDER)
    assert (p.mode, p.anchor, p.size) == ("join", "node02", 3)
    assert p.synced == {"node02", "node03"}


def test_a_new_controller_joins_a_running_cluster():
    states = {n: SYNCED for n in ORDER} | {"node04": {"installed": False}}
    p = plan(states, ORDER + ["node04"])
    assert p.mode == "join" and "node04" not in p.synced


def test_only_node_with_state_is_the_one_to_bootstrap():
    # a first run cut short after the bootstrap, then every node rebooted
    states = {"node01": {"grastate_uuid": UUID, "grastate_seqno": "-1", "grastate_safe_to_bootstrap": "0"},
              "node02": {"grastate_uuid": ZERO}, "node03": {}}
    assert plan(states, ORDER).anchor == "node01"


def test_safe_to_bootstrap_node_wins_after_a_clean_full_stop():
    # a clean stop of the whole cluster: the last node to leave has the highest seqno and the mark
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": s, "grastate_safe_to_bootstrap": "0"}
              for n, s in zip(ORDER, ("7", "8", "9"))}
    states["node03"]["grastate_safe_to_bootstrap"] = "1"
    p = plan(states, ORDER)
    assert (p.mode, p.anchor) == ("bootstrap", "node03")


def test_safe_to_bootstrap_node_is_trusted_when_another_controller_is_lost():
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": "-1", "grastate_safe_to_bootstrap": "0"} for n in ORDER[:2]}
    states["node02"]["grastate_safe_to_bootstrap"] = "1"
    assert plan(states, ORDER).anchor == "node02"


def test_full_outage_with_a_position_unknown_is_refused_with_the_positions():
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": s, "grastate_safe_to_bootstrap": "0"}
              for n, s in zip(ORDER, ("12", "15", "-1"))}
    with pytest.raises(GaleraStateError) as e:
        plan(states, ORDER)
    assert "node02 15" in str(e.value) and "node03 ?" in str(e.value) and "full-outage" in str(e.value)


def test_full_outage_bootstraps_the_most_advanced_node_not_the_safe_one():
    # every node crashed (seqno -1), galera_recovery told each position; node01 still carries an
    # old safe_to_bootstrap mark, but node02 committed more: node02 it is
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": "-1", "grastate_safe_to_bootstrap": "0",
                  "recovered_position": f"{UUID}:{pos}"} for n, pos in zip(ORDER, (60, 62, 61))}
    states["node01"]["grastate_safe_to_bootstrap"] = "1"
    p = plan(states, ORDER)
    assert (p.mode, p.anchor) == ("bootstrap", "node02")
    assert "node01 60, node02 62, node03 61" in p.why


def test_full_outage_reads_positions_of_nodes_running_without_a_primary():
    states = {n: {"active": True, "wsrep_cluster_status": "non-Primary", "wsrep_last_committed": c,
                  "grastate_uuid": UUID, "grastate_seqno": "-1"} for n, c in zip(ORDER, ("7", "7", "9"))}
    assert plan(states, ORDER).anchor == "node03"


def test_full_outage_tie_goes_to_the_safe_node_then_inventory_order():
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": "40", "grastate_safe_to_bootstrap": "0"} for n in ORDER}
    assert plan(states, ORDER).anchor == "node01"
    states["node03"]["grastate_safe_to_bootstrap"] = "1"
    assert plan(states, ORDER).anchor == "node03"


def test_full_outage_with_mariadb_waiting_at_start_says_to_stop_it():
    # a clean stop of every node, then a boot: each mariadbd waits for the others, answering nothing
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": "-1", "mysqld": "running"} for n in ORDER}
    with pytest.raises(GaleraStateError, match="starting and waiting for a Primary component.*stop mariadb on every"):
        plan(states, ORDER)


def test_full_outage_with_a_controller_unreachable_is_refused():
    states = {n: {"grastate_uuid": UUID, "grastate_seqno": s, "grastate_safe_to_bootstrap": "0"}
              for n, s in zip(ORDER[:2], ("12", "15"))}
    with pytest.raises(GaleraStateError, match="node03 unreachable"):
        plan(states, ORDER)


def test_galera_state_of_two_different_clusters_is_refused():
    other = "b66c3c01-0000-11f1-9311-667e3b65f41b"
    states = {n: {"grastate_uuid": u, "grastate_seqno": "5"} for n, u in zip(ORDER, (UUID, UUID, other))}
    with pytest.raises(GaleraStateError, match="different clusters"):
        plan(states, ORDER)


def test_unreachable_controllers_without_a_primary_are_refused():
    states = {"node01": {"installed": False}}
    with pytest.raises(GaleraStateError, match="node02, node03 unreachable"):
        plan(states, ORDER)


ADDRESSES = {"node01": "10.77.0.11", "node02": "10.77.0.12", "node03": "10.77.0.13"}


def test_a_member_removed_from_the_inventory_but_still_running_is_refused():
    members = "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306,10.77.0.14:3306"
    states = {n: SYNCED | {"wsrep_cluster_size": "4", "wsrep_incoming_addresses": members} for n in ORDER}
    assert strangers(states, ADDRESSES) == ["10.77.0.14"]
    with pytest.raises(GaleraStateError, match=r"does not list \(10.77.0.14\).*Stop mariadb"):
        plan(states, ORDER, ADDRESSES)
    # node04 stopped: the cluster forgets it, the deploy goes on
    states = {n: SYNCED | {"wsrep_incoming_addresses": members.rsplit(",", 1)[0]} for n in ORDER}
    assert plan(states, ORDER, ADDRESSES).mode == "join"


def test_rabbitmq_forgets_only_members_the_inventory_dropped():
    seed = {"running": True, "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03", "rabbit@node04"]}
    assert removed_members(seed, ORDER) == ["rabbit@node04"]
    assert removed_members(seed, ORDER + ["node04"]) == []
    assert removed_members({}, ORDER) == []


def test_galera_node_fact_parses_status_and_grastate():
    out = ["installed=yes", "active=yes", "wsrep_cluster_size=3", "wsrep_cluster_status=Primary",
           "wsrep_local_state_comment=Synced", f"grastate_uuid={UUID}", "grastate_seqno=-1",
           "grastate_safe_to_bootstrap=0", f"recovered_position={UUID}:62"]
    fact = GaleraNode().process(out)
    assert fact["installed"] and fact["active"] and fact["recovered_position"] == f"{UUID}:62"
    assert fact["wsrep_local_state_comment"] == "Synced" and fact["grastate_uuid"] == UUID
    assert GaleraNode().process(["installed=no"])["installed"] is False


# --- Galera: accounts -----------------------------------------------------------------------

DATA = {"mariadb_check_user": "haproxy", "internal_network": "10.77.0.0/24", "mariadb_admin_user": "admin",
        "galera_sst_method": "mariabackup"}
PASSWORDS = {"mariadb_admin_password": "s3cret-admin", "mariadb_sst_password": "s3cret-sst"}
ADDRS = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


def test_native_hash_is_mysqls():
    # MySQL's documented example: PASSWORD('mypass')
    assert native_hash("mypass") == "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"


def test_accounts_unknown_state_creates_everything_without_cleartext():
    sql = account_statements({"ok": False}, DATA, ADDRS, PASSWORDS)
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
    assert account_statements({"ok": True, "users": users, "test_db": False}, DATA, ADDRS, PASSWORDS) == []
    # a changed password, an anonymous account and a test database are put right
    users["sst@localhost"] = native_hash("old")
    users["@localhost"] = ""
    sql = account_statements({"ok": True, "users": users, "test_db": True}, DATA, ADDRS, PASSWORDS)
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
    cmds = [str(c) for c in definition_commands({}, RDATA, "pw-123")]
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
    out = ["installed", "running", "{[rabbit@node01,rabbit@node02,rabbit@node03],[rabbit@node01,rabbit@node02]}."]
    fact = RabbitmqCluster().process(out)
    assert fact == {"installed": True, "running": True, "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"]}
    fresh = RabbitmqCluster().process(["missing", "stopped"])
    assert fresh == {"installed": False, "running": False, "nodes": []}


# --- one-round-trip facts --------------------------------------------------------------------


def test_file_states_and_service_states_parse():
    files = FileStates().process(["F root haproxy 640 0123abcd /etc/haproxy/haproxy.cfg", "M /etc/memcached.conf"])
    assert files == {"/etc/haproxy/haproxy.cfg": {"user": "root", "group": "haproxy", "mode": "640", "sha1": "0123abcd"},
                     "/etc/memcached.conf": None}
    units = ServiceStates().process(["haproxy active enabled", "keepalived inactive not-found"])
    assert units["keepalived"] == {"active": "inactive", "enabled": "not-found"}
