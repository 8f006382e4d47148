"""What the facts leave and print (issue 24, item 3): the health report's keepalived state
leaves no dump (it holds the VRRP password) behind; the account facts print no password hash."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from unitkit import FAKE_SECRETS, netns, netns_sh, prod_data
import facts.keepalived as K
from config.files import managed_files
from config.site import build_site

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"


@pytest.mark.netns
def test_the_keepalived_state_fact_reads_the_dump_and_leaves_none_behind():
    # A real keepalived 2.x on node01's rendered config, in a throwaway namespace with its own
    # /tmp and /run (the test's files outside both); systemctl answers "active" (no unit here).
    # The fact's own command runs.
    tmp_path = Path(tempfile.mkdtemp(prefix="ka-fact-", dir="/var/tmp"))
    try:
        check_no_dump_left(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def check_no_dump_left(tmp_path: Path) -> None:
    hosts, group = prod_data()
    conf = next(f.content for f in managed_files(build_site(hosts, group), "node01", FAKE_SECRETS) if f.path == KEEPALIVED_CONF)
    (tmp_path / "keepalived").mkdir()
    (tmp_path / "keepalived" / "keepalived.conf").write_text(conf)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\necho active\n")
    (tmp_path / "bin" / "systemctl").chmod(0o755)
    (tmp_path / "fact.sh").write_text(K.KeepalivedState().command())
    script = (
        f"mount --bind {tmp_path / 'keepalived'} /etc/keepalived && mount -t tmpfs none /tmp && mount -t tmpfs none /run && "
        "(keepalived -n -l -f /etc/keepalived/keepalived.conf >/dev/null 2>&1 & echo $! > /run/ka.pid) && "
        "for i in $(seq 50); do [ -s /run/keepalived.pid ] && break; sleep 0.1; done; sleep 0.5; "
        f"PATH={tmp_path / 'bin'}:$PATH sh {tmp_path / 'fact.sh'}; "
        "sleep 0.5; echo __left; ls -A /tmp; echo __grep; grep -rlF -- \"$VRRP\" /tmp /run; kill $(cat /run/ka.pid)"
    )
    with netns() as ns:
        proc = netns_sh(ns, f"VRRP={FAKE_SECRETS['vrrp_auth_pass']}; {script}")
    out, _, rest = proc.stdout.partition("__left\n")
    left, _, found = rest.partition("__grep\n")
    result = K.KeepalivedState().process(out.splitlines())
    assert result["error"] is None and result["vrrp_state"] in ("BACKUP", "MASTER", "FAULT"), (proc.stdout, proc.stderr)
    assert left.split() == [], left
    assert found.strip() == "", found
    assert FAKE_SECRETS["vrrp_auth_pass"] not in proc.stdout


def test_the_keepalived_dump_is_removed_also_when_the_read_is_cut():
    command = K.KeepalivedState().command()
    assert command.count(K.DUMP_CLEANUP) >= 3 and "trap " in command  # before, after, and on exit
    assert "/tmp/keepalived_parent.data" in K.DUMP_CLEANUP


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run with pytest")


# --- the account facts: compared on the host, booleans out -----------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

import opkit  # noqa: E402
import operations.before as B  # noqa: E402
from facts.bundle import Bundle, part  # noqa: E402
from facts.galera import MysqlAccounts  # noqa: E402
from facts.rabbitmq import RabbitmqDefinitions  # noqa: E402
from config.accounts import native_hash  # noqa: E402
from test_operations import rabbit_hash  # noqa: E402


def fake_tool(bin_dir: Path, name: str, output: str, rc: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / f"{name}.out").write_text(output)
    (bin_dir / name).write_text(f"#!/bin/sh\ncat {bin_dir / (name + '.out')}\nexit {rc}\n")
    (bin_dir / name).chmod(0o755)


def run_sh(command: str, tmp_path: Path, stdin: str = "", **env) -> str:
    environ = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", **env}
    environ.pop("HA_INPUT", None)
    environ.update(env)
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, env=environ,
                          timeout=60, check=True).stdout


EXPECTED = {"mysql": {"admin": native_hash("s3cret-admin"), "haproxy": "", "sst": native_hash("s3cret-sst")},
            "rabbitmq": {"openstack": "pw-123", "admin": "adm-456", "openstack-ha-monitor": "mon-789"}}
MYSQL_OUT = "\n".join([
    f"user=admin@localhost={native_hash('s3cret-admin')}", f"user=admin@10.0.0.1={native_hash('old')}",
    "user=haproxy@10.0.0.1=", f"user=sst@localhost={native_hash('s3cret-sst')}", "user=mariadb.sys@localhost=",
    "test_db=yes",
]) + "\n"
# As RabbitMQ 3.10.8 writes it (seen on the lab): one line, compact, each user with its hashing
# algorithm, whose name holds the words "password_hash" (the filter once took it for a hash).
ALGO = "rabbit_password_hashing_sha256"
EXPORT = json.dumps({"users": [{"hashing_algorithm": ALGO, "limits": {}, "name": "openstack", "password_hash": rabbit_hash("pw-123"), "tags": []},
                               {"hashing_algorithm": ALGO, "limits": {}, "name": "admin", "password_hash": rabbit_hash("other"), "tags": ["administrator"]},
                               {"hashing_algorithm": ALGO, "limits": {}, "name": "openstack-ha-monitor", "password_hash": rabbit_hash("mon-789"), "tags": ["monitoring"]},
                               {"hashing_algorithm": ALGO, "limits": {}, "name": "guest", "password_hash": rabbit_hash("guest"), "tags": []}],
                     "vhosts": [{"name": "openstack"}]}, separators=(",", ":"))


def hashes_in(text: str) -> list[str]:
    every = [native_hash("s3cret-admin"), native_hash("old"), native_hash("s3cret-sst"),
             *(u["password_hash"] for u in json.loads(EXPORT)["users"])]
    return [h for h in every if h in text or h.lstrip("*") in text]


def test_mysql_accounts_compares_on_the_host_and_prints_no_hash(tmp_path):
    fake_tool(tmp_path / "bin", "mysql", MYSQL_OUT)
    (tmp_path / "in").write_text(json.dumps(EXPECTED))
    out = run_sh(MysqlAccounts().command(), tmp_path, HA_INPUT=str(tmp_path / "in"))
    assert hashes_in(out) == [] and "s3cret" not in out
    fact = MysqlAccounts().process(out.splitlines())
    assert fact == {"users": {"admin@localhost": True, "admin@10.0.0.1": False, "haproxy@10.0.0.1": True,
                              "sst@localhost": True, "mariadb.sys@localhost": False},
                    "test_db": True, "error": None}
    # read without the expected values (on its own): every account "no", still no hash
    alone = run_sh(MysqlAccounts().command(), tmp_path)
    assert hashes_in(alone) == [] and set(MysqlAccounts().process(alone.splitlines())["users"].values()) == {False}


def test_mysql_accounts_keeps_mysqls_error():
    out = ["ERROR 2002 (HY000): Can't connect to local server", "ok=no"]
    assert MysqlAccounts().process(out)["error"] == "mysql: ERROR 2002 (HY000): Can't connect to local server"


def test_rabbitmq_definitions_compares_on_the_host_and_prints_no_hash(tmp_path):
    fake_tool(tmp_path / "bin", "rabbitmqctl", "Warning: a line before\n" + EXPORT + "\n")
    (tmp_path / "in").write_text(json.dumps(EXPECTED))
    out = run_sh(RabbitmqDefinitions().command(), tmp_path, HA_INPUT=str(tmp_path / "in"))
    assert hashes_in(out) == [] and '"password_hash"' not in out and "pw-123" not in out and "mon-789" not in out
    fact = RabbitmqDefinitions().process(out.splitlines())
    assert fact["error"] is None and fact["vhosts"] == [{"name": "openstack"}]
    assert [(u["name"], u["password_ok"], u["tags"]) for u in fact["users"]] == [
        ("openstack", True, []), ("admin", False, ["administrator"]), ("openstack-ha-monitor", True, ["monitoring"]),
        ("guest", False, [])]


def test_rabbitmq_definitions_keeps_rabbitmqctls_status_and_hides_a_cut_answer(tmp_path):
    fake_tool(tmp_path / "bin", "rabbitmqctl", "Error: unable to perform an operation on node 'rabbit@node01'.\n", rc=69)
    fact = RabbitmqDefinitions().process(run_sh(RabbitmqDefinitions().command(), tmp_path).splitlines())
    assert fact["error"].startswith("rabbitmqctl export_definitions: exit status 69: Error: unable")
    fake_tool(tmp_path / "bin", "rabbitmqctl", EXPORT[: len(EXPORT) // 2] + "\n", rc=0)
    out = run_sh(RabbitmqDefinitions().command(), tmp_path)
    assert hashes_in(out) == [] and '"password_hash"' not in out
    assert RabbitmqDefinitions().process(out.splitlines())["error"]


# --- RabbitmqDefinitions from the management API (no Erlang VM), the CLI when it fails ------

import base64 as _base64  # noqa: E402
import contextlib  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402

API_DEFINITIONS = {**json.loads(EXPORT), "rabbitmq_version": "3.10.8",
                   "queues": [{"name": "reply_x", "vhost": "openstack"}], "exchanges": [], "bindings": []}
API_DEFINITIONS["users"][1]["password_hash"] = rabbit_hash("adm-456")  # the administrator's, right


@contextlib.contextmanager
def management_api(answer: dict):
    """A management listener on loopback: GET /api/definitions as admin/adm-456 (else 401);
    yields the list of requests it saw."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            good = "Basic " + _base64.b64encode(b"admin:adm-456").decode()
            status, body = (200, json.dumps(answer)) if self.headers.get("Authorization") == good else (401, '{"error":"not_authorised"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def cli_marked(tmp_path: Path) -> None:
    """rabbitmqctl that answers EXPORT and leaves a mark when it runs."""
    fake_tool(tmp_path / "bin", "rabbitmqctl", EXPORT + "\n")
    tool = tmp_path / "bin" / "rabbitmqctl"
    tool.write_text(tool.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\ntouch {tmp_path / 'cli-ran'}\n", 1))


def read_definitions(tmp_path: Path, port: int, expected: dict | None) -> tuple[str, dict]:
    if expected is not None:
        (tmp_path / "in").write_text(json.dumps(expected))
    env = {"HA_INPUT": str(tmp_path / "in")} if expected is not None else {}
    out = run_sh(RabbitmqDefinitions().command(admin="admin", address="127.0.0.1", port=port), tmp_path, **env)
    return out, RabbitmqDefinitions().process(out.splitlines())


def test_rabbitmq_definitions_come_from_the_management_api_as_the_administrator(tmp_path):
    cli_marked(tmp_path)
    with management_api(API_DEFINITIONS) as (port, seen):
        out, fact = read_definitions(tmp_path, port, EXPECTED)
    assert [path for path, _ in seen] == ["/api/definitions"]
    assert fact["error"] is None and fact["read_with"] == "management API"
    assert not (tmp_path / "cli-ran").exists()  # no Erlang VM
    assert [(u["name"], u["password_ok"]) for u in fact["users"]] == [
        ("openstack", True), ("admin", True), ("openstack-ha-monitor", True), ("guest", False)]
    # what the plan reads, and nothing else: a production broker's queues stay on the host
    assert set(fact) == {"rabbitmq_version", "users", "vhosts", "read_with", "error"}
    login = _base64.b64encode(b"admin:adm-456").decode()
    assert "adm-456" not in out and login not in out and '"password_hash"' not in out
    assert hashes_in(out) == [] and rabbit_hash("adm-456") not in out


def test_rabbitmq_definitions_fall_back_to_the_cli_when_the_api_refuses_the_login(tmp_path):
    # a rotated administrator password (the deploy sets it after this read) or a first deploy
    cli_marked(tmp_path)
    rotated = {**EXPECTED, "rabbitmq": {**EXPECTED["rabbitmq"], "admin": "new-secret"}}
    with management_api(API_DEFINITIONS) as (port, seen):
        out, fact = read_definitions(tmp_path, port, rotated)
    assert len(seen) == 1 and (tmp_path / "cli-ran").exists()
    assert fact["error"] is None and fact["read_with"] == "rabbitmqctl export_definitions"
    assert [(u["name"], u["password_ok"]) for u in fact["users"]][:2] == [("openstack", True), ("admin", False)]
    assert "new-secret" not in out and hashes_in(out) == []


def test_rabbitmq_definitions_without_the_expected_values_ask_only_the_cli(tmp_path):
    cli_marked(tmp_path)
    with management_api(API_DEFINITIONS) as (port, seen):
        _, fact = read_definitions(tmp_path, port, None)
        _, refused = read_definitions(tmp_path, 1, EXPECTED)  # nothing listens on port 1
    assert seen == [] and fact["read_with"] == refused["read_with"] == "rabbitmqctl export_definitions"
    assert fact["error"] is None and refused["error"] is None


def test_a_bundle_hands_its_stdin_to_the_parts_in_a_private_file_it_removes(tmp_path):
    fake_tool(tmp_path / "bin", "mysql", MYSQL_OUT)
    (tmp_path / "tmp").mkdir()
    bundle = Bundle()
    command = bundle.command(parts=(part(MysqlAccounts),), limit=30, with_input=True)
    out = run_sh(command, tmp_path, stdin=json.dumps(EXPECTED), TMPDIR=str(tmp_path / "tmp"))
    assert "s3cret" not in command and hashes_in(command + out) == []
    (fact,) = bundle.process(out.splitlines())["parts"]
    assert fact["users"]["admin@localhost"] is True and fact["users"]["admin@10.0.0.1"] is False
    assert list((tmp_path / "tmp").iterdir()) == []  # the input and the answers removed
    # the input file's mode, seen from a part
    fake_tool(tmp_path / "bin", "mysql", "")
    probe = Bundle().command(parts=(part(MysqlAccounts),), with_input=True).replace(
        "out=$(timeout 10 mysql", 'stat -c "mode=%a" "$HA_INPUT"; out=$(timeout 10 mysql', 1)
    proc = subprocess.run(["sh", "-c", probe], input="{}", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "TMPDIR": str(tmp_path / "tmp")})
    assert "mode=600" in proc.stdout, proc.stdout


def test_the_run_hands_the_expected_values_to_the_first_controllers_bundle_only():
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    calls = {}

    class Controller:
        def __init__(self, name):
            self.name = name

        def get_fact(self, cls, **kwargs):
            calls[self.name] = kwargs
            return {"parts": [], "status": [], "error": "not read here"}

    with opkit.planning(case) as (state, inventory):
        first, second = [h.name for h in inventory.get_group("controllers")][:2]
        B._bundle(Controller(first))
        B._bundle(Controller(second))
        site = B.site()
    given = calls[first]
    assert given["with_input"] is True
    d = site.data
    from pyinfra.api.util import get_kwargs_str  # what pyinfra prints of a fact's arguments ("Loaded fact")

    printed = get_kwargs_str(given)
    assert "(expected values, not shown)" in printed and not any(v in printed for v in FAKE_SECRETS.values())
    assert native_hash(FAKE_SECRETS["mariadb_admin_password"])[1:] not in printed
    assert json.loads("".join(given["_stdin"].readlines())) == {
        "mysql": {d["mariadb_check_user"]: "", d["mariadb_admin_user"]: native_hash(FAKE_SECRETS["mariadb_admin_password"]),
                  "sst": native_hash(FAKE_SECRETS["mariadb_sst_password"])},
        "rabbitmq": {d["rabbitmq_user"]: FAKE_SECRETS["rabbitmq_password"],
                     d["rabbitmq_admin_user"]: FAKE_SECRETS["rabbitmq_admin_password"],
                     d["rabbitmq_monitor_user"]: FAKE_SECRETS["rabbitmq_monitor_password"]}}
    shown = repr({k: v for k, v in given.items() if k != "_stdin"})
    assert not any(v in shown for v in FAKE_SECRETS.values()) and "*" + native_hash("x")[1:5] not in shown
    assert "_stdin" not in calls[second] and "with_input" not in calls[second]


def test_an_account_fact_read_where_no_bundle_carried_it_gets_the_expected_values_too():
    # The Galera anchor or the RabbitMQ seed is not always the first controller (whose bundle
    # carries the account facts): read alone, with no expected values, every account would
    # read "no" and every run set the passwords again.
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    calls = []

    class Controller:
        name = "node02"

        def get_fact(self, cls, **kwargs):
            calls.append(kwargs)
            parts = kwargs["parts"]
            if len(parts) == 1:  # the fact alone, in a bundle of its own
                return {"parts": [{"users": {"admin@localhost": True}, "test_db": False, "error": None}],
                        "status": ["0"], "error": None}
            return {"parts": [None] * len(parts), "status": ["0"] * len(parts), "error": None}

    with opkit.planning(case) as (state, inventory):
        fact = B.fact_of(Controller(), MysqlAccounts)
    assert fact == {"users": {"admin@localhost": True}, "test_db": False, "error": None}
    alone = calls[-1]
    assert alone["parts"] == (part(MysqlAccounts),) and alone["with_input"] is True
    assert "mysql" in json.loads("".join(alone["_stdin"].readlines()))
