"""The deploy's decisions, offline: what to bootstrap, whom to join, which SQL and rabbitmqctl
commands to run, how facts are parsed. The lab tests run the same code against real nodes."""

import base64
import hashlib
import re

import pytest
from pyinfra.api import FileUploadCommand

from facts.galera import GaleraNode
from facts.host import SECRET_DIR, FileStates, ServiceStates
from facts.rabbitmq import RabbitmqCluster
from config.accounts import native_hash
from operations.galera import account_statements
from operations.rabbitmq import definition_commands, restart_command
from operations.rabbitmq_plan import removed_members, seed_node, stuck

ORDER = ["node01", "node02", "node03"]
SYNCED = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_cluster_size": "3"}
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
ZERO = "00000000-0000-0000-0000-000000000000"


def test_rabbitmq_forgets_only_members_the_inventory_dropped():
    seed = {"running": True, "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03", "rabbit@node04"]}
    assert removed_members(seed, ORDER) == ["rabbit@node04"]
    assert removed_members(seed, ORDER + ["node04"]) == []
    assert removed_members({}, ORDER) == []


# (rabbitmq_start_timeout, the first try's bound, the second's): the second at least 300 s and
# at least twice the first, longer than systemd's own bound (the same as the first) and its kill
@pytest.mark.parametrize("bound, first, second", [(120, 120, 300), (60, 60, 300), (150, 150, 300), (151, 151, 302),
                                                  (3600, 3600, 7200)])
def test_a_broker_restart_is_bounded_by_the_start_timeout_and_tried_once_more(bound, first, second):
    cmd = restart_command(bound)
    assert re.findall(r"timeout (\d+) systemctl restart rabbitmq-server", cmd) == [str(first), str(second)]
    assert f"did not start within {first} s (the boot hang of rabbitmq-server#6034?)" in cmd
    assert "systemctl kill -s KILL rabbitmq-server; sleep 2; " in cmd


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
        "galera_sst_method": "mariabackup", "mariadb_check_method": "mysql-check"}
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
        assert f"GRANT ALL PRIVILEGES ON *.* TO 'admin'@'{addr}' WITH GRANT OPTION" in sql
    assert "'sst'@'localhost'" in text
    assert "GRANT ALL PRIVILEGES ON *.* TO 'admin'@'localhost' WITH GRANT OPTION" in sql
    # the whole network's admin account earlier deploys made is gone
    assert "DROP USER IF EXISTS 'admin'@'10.77.0.0/255.255.255.0'" in sql
    assert not any(s.startswith(("CREATE", "GRANT", "ALTER")) and "10.77.0.0" in s for s in sql)
    assert "DROP DATABASE IF EXISTS test" in sql
    assert "s3cret" not in text  # only hashes travel
    assert native_hash("s3cret-admin") in text


def deployed_users():
    """MysqlAccounts once deployed: every account with the hash it was expected to have."""
    users = {f"haproxy@{a}": True for a in ADDRS}
    users |= {f"admin@{h}": True for h in ("localhost", *ADDRS)}
    users["sst@localhost"] = True
    return users


def test_accounts_in_place_make_no_statement():
    users = deployed_users()
    assert account_statements({"error": None, "users": users, "test_db": False}, DATA, ADDRS, PASSWORDS) == []
    # a changed password (the host found another hash), an anonymous account and a test
    # database are put right
    users["sst@localhost"] = False
    users["@localhost"] = False
    sql = account_statements({"error": None, "users": users, "test_db": True}, DATA, ADDRS, PASSWORDS)
    assert any(s.startswith("ALTER USER 'sst'@'localhost'") for s in sql)
    assert "DROP USER IF EXISTS ''@'localhost'" in sql and "DROP DATABASE IF EXISTS test" in sql
    assert not any("admin" in s for s in sql)


def test_admin_only_from_localhost_and_the_controllers_wider_accounts_dropped():
    users = deployed_users() | {"admin@10.77.0.0/255.255.255.0": True, "admin@%": False,
                                "admin@10.77.0.14": True, "administrator@%": False}
    sql = account_statements({"error": None, "users": users, "test_db": False}, DATA, ADDRS, PASSWORDS)
    assert sql == ["DROP USER IF EXISTS 'admin'@'%'", "DROP USER IF EXISTS 'admin'@'10.77.0.0/255.255.255.0'",
                   "DROP USER IF EXISTS 'admin'@'10.77.0.14'"]  # not another user's, not a controller's


def test_the_passwordless_check_account_exists_only_for_mysql_check():
    httpchk = {**DATA, "mariadb_check_method": "httpchk"}
    users = deployed_users()
    sql = account_statements({"error": None, "users": users, "test_db": False}, httpchk, ADDRS, PASSWORDS)
    assert sql == [f"DROP USER IF EXISTS 'haproxy'@'{a}'" for a in sorted(ADDRS)]
    fresh = account_statements({"error": "not read"}, httpchk, ADDRS, PASSWORDS)
    assert not any("CREATE USER IF NOT EXISTS 'haproxy'" in s for s in fresh)
    assert all(f"DROP USER IF EXISTS 'haproxy'@'{a}'" in fresh for a in ADDRS)
    gone = {k: v for k, v in users.items() if not k.startswith("haproxy@")}
    assert account_statements({"error": None, "users": gone, "test_db": False}, httpchk, ADDRS, PASSWORDS) == []


# --- RabbitMQ --------------------------------------------------------------------------------

RDATA = {"rabbitmq_user": "openstack", "rabbitmq_vhost": "openstack", "rabbitmq_queue_type": "quorum"}


def rabbit_hash(password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_the_expected_values_the_hosts_compare():
    from config.accounts import expected_hashes, expected_passwords

    secret = {**PASSWORDS, **RPW}.__getitem__
    assert expected_hashes(DATA, secret) == {"haproxy": "", "admin": native_hash("s3cret-admin"), "sst": native_hash("s3cret-sst")}
    assert expected_hashes({**DATA, "galera_sst_method": "rsync"}, secret) == {"haproxy": "", "admin": native_hash("s3cret-admin")}
    assert expected_passwords(RDATA, secret) == {"openstack": "pw-123", "admin": "adm-456", "monitor": "mon-789"}


def test_seed_is_the_first_clustered_node_else_the_first():
    fresh = {n: {"running": True, "nodes": [f"rabbit@{n}"]} for n in ORDER}
    assert seed_node(fresh, ORDER) == "node01"
    clustered = {"node01": {"running": False, "nodes": []},
                 "node02": {"running": True, "nodes": ["rabbit@node02", "rabbit@node03"]}}
    assert seed_node(clustered, ORDER) == "node02"


RPW = {"rabbitmq_password": "pw-123", "rabbitmq_admin_password": "adm-456", "rabbitmq_monitor_password": "mon-789"}
RDATA = RDATA | {"rabbitmq_admin_user": "admin", "rabbitmq_monitor_user": "monitor"}


def commands(cmds) -> list[str]:
    return [f"upload {c.dest}" if isinstance(c, FileUploadCommand) else str(c) for c in cmds]


def test_definitions_unknown_state_are_safe_to_repeat_and_hide_the_password():
    cmds = definition_commands({"error": "not read"}, RDATA, RPW)
    text = "\n".join(commands(cmds))
    assert "add_vhost openstack" in text and "set_permissions -p openstack openstack" in text
    assert "delete_user guest" in text and "ha-all" not in text
    # the passwords reach rabbitmqctl on stdin from a 0600 file, never on a command line
    assert "pw-123" not in text and "adm-456" not in text and "mon-789" not in text
    uploads = {c.dest: c.src.getvalue() for c in cmds if isinstance(c, FileUploadCommand)}
    assert uploads == {f"{SECRET_DIR}/rabbitmq_password": "pw-123", f"{SECRET_DIR}/rabbitmq_admin_password": "adm-456",
                       f"{SECRET_DIR}/rabbitmq_monitor_password": "mon-789"}
    assert f"add_user openstack < {SECRET_DIR}/rabbitmq_password; fi; rc=$?; rm -f {SECRET_DIR}/rabbitmq_password" in text
    # least privilege: the services' user has no tag, the administrator no vhost permission
    assert "timeout 60 rabbitmqctl set_user_tags openstack" in text.splitlines()
    assert "timeout 60 rabbitmqctl set_user_tags admin administrator" in text.splitlines()
    assert "set_permissions -p openstack admin" not in text
    # the health report's account: tag monitoring (GET /api/nodes), no vhost permission
    assert "timeout 60 rabbitmqctl set_user_tags monitor monitoring" in text.splitlines()
    assert "set_permissions -p openstack monitor" not in text


DEFS = {  # RabbitmqDefinitions: password_ok as the host compared it
    "users": [{"name": "openstack", "password_ok": True, "tags": []},
              {"name": "admin", "password_ok": True, "tags": ["administrator"]},
              {"name": "monitor", "password_ok": True, "tags": ["monitoring"]}],
    "vhosts": [{"name": "openstack"}],
    "permissions": [{"user": "openstack", "vhost": "openstack", "configure": ".*", "write": ".*", "read": ".*"}],
    "policies": [],
}


def test_definitions_in_place_make_no_command_and_mirrored_adds_the_policy():
    assert definition_commands(DEFS, RDATA, RPW) == []
    cmds = commands(definition_commands(DEFS, RDATA | {"rabbitmq_queue_type": "mirrored"}, RPW))
    assert len(cmds) == 1 and "set_policy -p openstack --apply-to queues ha-all" in cmds[0]
    other = {**DEFS, "users": [DEFS["users"][0], {**DEFS["users"][1], "password_ok": False}, DEFS["users"][2]]}
    changed = commands(definition_commands(other, RDATA, {**RPW, "rabbitmq_admin_password": "new"}))
    assert changed == [f"install -d -m 700 {SECRET_DIR} && install -m 600 /dev/null {SECRET_DIR}/rabbitmq_admin_password",
                       f"upload {SECRET_DIR}/rabbitmq_admin_password",
                       f"timeout 60 rabbitmqctl change_password admin < {SECRET_DIR}/rabbitmq_admin_password; rc=$?; "
                       f"rm -f {SECRET_DIR}/rabbitmq_admin_password; exit $rc"]


def test_the_services_user_loses_the_administrator_tag_the_administrator_any_permission():
    before = {**DEFS, "users": [{**DEFS["users"][0], "tags": ["administrator"]}, *DEFS["users"][1:]],
              "permissions": DEFS["permissions"] + [{"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}
    assert commands(definition_commands(before, RDATA, RPW)) == [
        "timeout 60 rabbitmqctl set_user_tags openstack", "timeout 60 rabbitmqctl clear_permissions -p / admin"]
    # tags as older export_definitions write them: one comma-separated string
    legacy = {**DEFS, "users": [{**DEFS["users"][0], "tags": ""}, {**DEFS["users"][1], "tags": "administrator"},
                                {**DEFS["users"][2], "tags": "monitoring"}]}
    assert definition_commands(legacy, RDATA, RPW) == []
    # a missing administrator is created with its tag
    alone = {**DEFS, "users": DEFS["users"][::2]}
    assert commands(definition_commands(alone, RDATA, RPW))[-1] == "timeout 60 rabbitmqctl set_user_tags admin administrator"


def test_the_monitoring_account_has_its_tag_only_and_its_password():
    # more than monitoring (administrator: users, permissions, definitions) or a vhost permission
    # (messages, queue contents) is taken back; nothing else changes
    wider = {**DEFS, "users": [*DEFS["users"][:2], {**DEFS["users"][2], "tags": ["monitoring", "administrator"]}],
             "permissions": DEFS["permissions"] + [{"user": "monitor", "vhost": "openstack", "configure": "", "write": "", "read": ".*"}]}
    assert commands(definition_commands(wider, RDATA, RPW)) == [
        "timeout 60 rabbitmqctl set_user_tags monitor monitoring", "timeout 60 rabbitmqctl clear_permissions -p openstack monitor"]
    # missing (a site deployed before the report read the management API): created, stdin, its tag
    missing = commands(definition_commands({**DEFS, "users": DEFS["users"][:2]}, RDATA, RPW))
    assert missing[:2] == [f"install -d -m 700 {SECRET_DIR} && install -m 600 /dev/null {SECRET_DIR}/rabbitmq_monitor_password",
                           f"upload {SECRET_DIR}/rabbitmq_monitor_password"]
    assert f"else timeout 60 rabbitmqctl add_user monitor < {SECRET_DIR}/rabbitmq_monitor_password; fi" in missing[2]
    assert missing[3:] == ["timeout 60 rabbitmqctl set_user_tags monitor monitoring"]
    # a rotated password (the host compared it: password_ok False) is changed, from stdin
    rotated = {**DEFS, "users": [*DEFS["users"][:2], {**DEFS["users"][2], "password_ok": False}]}
    assert commands(definition_commands(rotated, RDATA, RPW))[-1] == (
        f"timeout 60 rabbitmqctl change_password monitor < {SECRET_DIR}/rabbitmq_monitor_password; rc=$?; "
        f"rm -f {SECRET_DIR}/rabbitmq_monitor_password; exit $rc")


def test_rabbitmq_cluster_fact_reads_the_recorded_cluster():
    out = ["installed", "running", "broker", "{[rabbit@node01,rabbit@node02,rabbit@node03],[rabbit@node01,rabbit@node02]}.",
           "", "__end"]
    fact = RabbitmqCluster().process(out)
    assert fact == {"installed": True, "running": True, "broker": True,
                    "nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"], "reaches": None, "error": None}
    fresh = RabbitmqCluster().process(["missing", "stopped", "", "__end"])
    assert fresh == {"installed": False, "running": False, "broker": False, "nodes": [], "reaches": None, "error": None}
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
    cmds = commands(definition_commands({"error": "not read"}, RDATA | {"rabbitmq_user": bad, "rabbitmq_vhost": bad}, RPW))
    cmds.append(bootstrap_command("node01", [bad], (None, None)))
    for cmd in cmds:  # every occurrence of the value is its quoted form
        assert bad not in cmd.replace(shlex.quote(bad), "")
    assert sum(shlex.quote(bad) in c for c in cmds) >= 5
    # a node name read from a controller's own files is only used when well formed
    assert removed_members({"nodes": ["rabbit@node01", f"rabbit@{bad}"]}, ["node01"]) == []


def test_a_refused_decision_is_printed_once_and_stops_every_host(capsys):
    from operations.common import Refused, decided_once
    from runstatekit import a_run

    calls = []

    @decided_once("galera: ", ValueError)
    def refused():
        calls.append(1)
        raise ValueError("node02 unreachable: run without --limit")

    @decided_once("x: ", ValueError)
    def decided():
        calls.append(2)
        return {"bootstrap": "node01"}

    @decided_once("x: ", ValueError)
    def crashed():
        raise KeyError("not a refusal: raised as it is")

    with a_run():
        raised = []
        for _ in range(3):  # one call per host's deploy
            with pytest.raises(Refused) as exc:
                refused()
            raised.append(exc.value)
        assert len(calls) == 1 and capsys.readouterr().err == ""  # printed by pyinfra's CLI, once
        assert all(r is raised[0] for r in raised)
        assert str(raised[0]) == "galera: node02 unreachable: run without --limit"
        assert decided() is decided() and decided() == {"bootstrap": "node01"}
        assert calls == [1, 2]
        with pytest.raises(KeyError):
            crashed()
    with a_run():  # the next run decides again
        with pytest.raises(Refused):
            refused()
        assert calls == [1, 2, 1]


def test_a_bounded_wait_says_its_step_whatever_its_words(tmp_path):
    """wait_until's failure line is one shell word: a step named with an apostrophe (the
    upgrade's "node01's turn") still runs and is said as written."""
    import subprocess
    from types import SimpleNamespace

    from pyinfra.context import ctx_host

    from operations.common import wait_until

    with ctx_host.use(SimpleNamespace(name="node02")):
        cmd = str(wait_until("false", "node01's writes to come back", seconds=1))
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == "node02: timed out after 1s waiting for node01's writes to come back"
