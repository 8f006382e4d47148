"""Offline operation runs, in the style of pyinfra's own operation tests: facts in, commands out.

pyinfra's test suite (tests/test_operations.py, tests/util.py) runs an operation against a
fake state and host whose get_fact answers from a JSON case, and compares the commands the
operation yields with the case's. Here the state, inventory and hosts are pyinfra's real ones
(inventories/lab.py's site, the lab's own data, no lab needed), never connected: Host.get_fact
is patched to answer from the case, so a component's configure() plans exactly as in a deploy
and every operation's commands are collected per host, without SSH.

A case (tests/unit/operations/<component>/<case>.json):

    {"description": "...",
     "nodes": ["node01", "node02", "node03"],          # lab.py's controllers (default: 3)
     "data": {"memcached_memory_mb": 128},               # group data changed for this case
     "components": ["memcached"],                        # configure()s run, in deploy order
                                                         # (or a COMMANDS module: its run())
     "override": {"node": "node02"},                     # pyinfra --data (override data)
     "facts": {"*": {FACT: VALUE}, "node02": {FACT: VALUE}},   # "*": every host, then per host
                                                         # ("$case": "../site/deployed": from that case)
     "unreachable": ["node02"],                          # hosts whose connection fails (not planned)
     "commands": {"node01": [["operation name", ["command", ...]], ...], ...},
     "facts_after": {...}}                               # the state after: no command at all

A fact called with path= (FileContents, Sha1File) is a {path: value} dict. Values that depend on
rendered content are symbolic, computed from the case's own site (see resolve()):

    FileStates:  "$deployed" (every managed file as the deploy writes it), "$missing", or
                 {path: "$deployed" | null | {...}, "*": default}; a path the site does not
                 manage is there as given ({...}: root:root 644 unless it says otherwise)
    Sha1File:    {path: "$deployed"}      GaleraNode.cnf_sans_members: "$deployed"
    ServiceStates: {unit: {...}, "$reloads": [component, ...]}  (daemon-reload markers left; default none)

An expected command ending in " ..." matches any command starting with the text before it
(the long shell loops: apt retries, bounded waits). Uploads are "upload <path>".
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import json
import re
from pathlib import Path

import pytest

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

import unitkit  # noqa: F401,E402  (first: puts the repository on sys.path)
from config.files import GALERA_CNF, managed_files
from config.secrets import env_name
from config.site import GROUP, build_site
from unitkit import FAKE_SECRETS, lab_data

CASES = Path(__file__).resolve().parent / "operations"
COMPONENTS = ("host", "upgrade", "firewall", "memcached", "galera", "dbcheck", "rabbitmq", "haproxy", "keepalived",
              "monitoring", "backup")  # deploy.py's order
COMMANDS = ("maintenance",)  # operations modules of other entry points: their run(), with the case's `override`
ANY = " ..."


def load_case(path: Path) -> dict:
    """A case. Its `facts` or `facts_after` may start from another case's facts: {"$case":
    "../site/deployed", "*": {...}, "node02": {...}} is that case's facts with these facts
    replaced (fact by fact, per host)."""
    case = json.loads(path.read_text())
    for key in ("facts", "facts_after"):
        facts = case.get(key)
        if isinstance(facts, dict) and "$case" in facts:
            base = load_case(path.parent / f"{facts['$case']}.json")["facts"]
            merged = copy.deepcopy(base)
            for host, changes in facts.items():
                if host != "$case":
                    merged.setdefault(host, {}).update(changes)
            case[key] = merged
    return case


def case_site(case: dict):
    hosts, group = lab_data(tuple(case.get("nodes", ("node01", "node02", "node03"))))
    # backups off unless a case turns them on (the lab's are on): a component's case reads no backup file
    group = {**group, "backup_enabled": False, **case.get("data", {})}
    return hosts, group, build_site(hosts, group)


def deployed_states(site, name: str) -> dict:
    return {f.path: {"user": f.user, "group": f.group, "mode": f.mode.lstrip("0"),
                     "sha1": hashlib.sha1(f.content.encode()).hexdigest()}
            for f in managed_files(site, name, FAKE_SECRETS)}


def substitute(value, addresses: dict[str, str], name: str):
    """"{node01}" in a case's strings is node01's address, "{vip}" the VIP, "{name}" the host's
    own name (the lab's subnet is the machine's: cases never spell an address)."""
    if isinstance(value, str):
        return re.sub(r"\{(name|vip|node\d+)\}", lambda m: name if m.group(1) == "name" else addresses[m.group(1)], value)
    if isinstance(value, list):
        return [substitute(v, addresses, name) for v in value]
    if isinstance(value, dict):
        return {substitute(k, addresses, name): substitute(v, addresses, name) for k, v in value.items()}
    return value


def addresses(site) -> dict[str, str]:
    return {"vip": site["vip"], **{c.name: c.address for c in site.controllers}}


# pyinfra's own facts (FileContents, Sha1File, DebPackages) answer as pyinfra does; ours
# carry the error contract of facts/ (an `error` key, None when read).
WRAPPED = {"FileStates": "files", "ServiceStates": "units"}
NATIVE = {"FileContents", "Sha1File", "DebPackages"}


def resolve(site, name: str, fact: str, value):
    """A case's fact value for host `name`, with the error contract of facts/ applied."""
    if value == TIMEOUT:
        return value
    value = _resolve(site, name, fact, value)
    if fact == "ServiceStates":  # its components whose daemon-reload an earlier run left: "$reloads"
        value = dict(value)
        return {"units": value, "reloads": value.pop("$reloads", []), "error": None}
    if fact in WRAPPED:
        return {WRAPPED[fact]: value, "error": None}
    if fact not in NATIVE and isinstance(value, dict):
        value.setdefault("error", None)
    return value


def _resolve(site, name: str, fact: str, value):
    """A case's fact value for host `name`, its symbols replaced by what the site renders."""
    value = substitute(value, addresses(site), name)
    if fact == "FileContents" and value.get("/etc/hosts") == "$deployed":
        return {**value, "/etc/hosts": ["127.0.0.1 localhost", *(f"{c.address} {c.name}" for c in site.controllers)]}
    if fact == "FileStates":
        deployed = deployed_states(site, name)
        if value in ("$deployed", "$missing"):
            return {p: (s if value == "$deployed" else None) for p, s in deployed.items()}
        default = value.get("*", "$deployed")
        out = {}
        for p, s in deployed.items():
            v = value.get(p, default)
            out[p] = s if v == "$deployed" else (None if v in (None, "$missing") else {**s, **v})
        for p, v in value.items():  # a file the site does not manage (left by an earlier run): as given
            if p != "*" and p not in deployed:
                out[p] = None if v in (None, "$missing") else {"user": "root", "group": "root", "mode": "644", **v}
        return out
    if fact == "Sha1File":
        files = {f.path: f for f in managed_files(site, name, FAKE_SECRETS)}
        return {p: hashlib.sha1(files[p].content.encode()).hexdigest() if v == "$deployed" else v for p, v in value.items()}
    if fact == "GaleraNode" and isinstance(value, dict) and value.get("cnf_sans_members") == "$deployed":
        from facts.galera import sans_members

        (cnf,) = [f for f in managed_files(site, name, FAKE_SECRETS) if f.path == GALERA_CNF]
        return {**value, "cnf_sans_members": sans_members(cnf.content)}
    if fact == "MysqlAccounts" and value == "$deployed":
        return deployed_accounts(site)
    if fact == "RabbitmqDefinitions" and value == "$deployed":
        return deployed_definitions(site)
    return value


def deployed_accounts(site) -> dict:
    """MysqlAccounts once the deploy made them: every account it creates, with the hash the
    host was told to expect (True); the database check's own account (unix_socket) too, and
    mysqld_exporter's with monitoring."""
    from config.files import DBCHECK
    from operations.galera import account_statements

    passwords = {n: FAKE_SECRETS[n] for n in ("mariadb_admin_password", "mariadb_sst_password")}
    sql = account_statements({"error": "not read"}, site.data, [c.address for c in site.controllers], passwords)
    users = {}
    for statement in sql:
        if m := re.match(r"CREATE USER IF NOT EXISTS '([^']*)'@'([^']*)'(?: IDENTIFIED BY PASSWORD '([^']*)')?$", statement):
            users[f"{m.group(1)}@{m.group(2)}"] = True
    users[f"{DBCHECK['account']}@localhost"] = False  # unix_socket: no hash to compare
    if site["monitoring_enabled"]:
        from config.monitoring import EXPORTER_ACCOUNT

        users[f"{EXPORTER_ACCOUNT}@localhost"] = False  # mysqld_exporter's, unix_socket too
    return {"error": None, "users": users, "test_db": False}


def deployed_definitions(site) -> dict:
    """RabbitmqDefinitions once the deploy made them (users, vhost, permissions, policy)."""
    d = site.data
    policies = [{"name": "ha-all", "vhost": d["rabbitmq_vhost"]}] if d["rabbitmq_queue_type"] == "mirrored" else []
    return {"users": [{"name": d["rabbitmq_user"], "password_ok": True, "tags": []},
                      {"name": d["rabbitmq_admin_user"], "password_ok": True, "tags": ["administrator"]},
                      {"name": d["rabbitmq_monitor_user"], "password_ok": True, "tags": ["monitoring"]}],
            "vhosts": [{"name": "/"}, {"name": d["rabbitmq_vhost"]}],
            "permissions": [{"user": d["rabbitmq_user"], "vhost": d["rabbitmq_vhost"], "configure": ".*", "write": ".*", "read": ".*"}],
            "policies": policies}


def host_facts(case_facts: dict, name: str) -> dict:
    facts = copy.deepcopy(case_facts.get("*", {}))
    for fact, value in case_facts.get(name, {}).items():
        facts[fact] = copy.deepcopy(value)
    return facts


def render_command(cmd) -> str:
    if isinstance(cmd, FileUploadCommand):
        return f"upload {cmd.dest}"
    if isinstance(cmd, StringCommand):
        return str(cmd)  # masked: a secret shows as its placeholder
    return str(cmd)


@contextlib.contextmanager
def _secrets_in_env():
    mp = pytest.MonkeyPatch()
    try:
        for name, value in FAKE_SECRETS.items():
            mp.setenv(env_name(name), value)
        yield
    finally:
        mp.undo()


TIMEOUT = "$timeout"  # a fact's value: its part of the pre-run bundle ran out of time on the host


@contextlib.contextmanager
def planning(case: dict, facts_key: str = "facts"):
    """pyinfra's state and inventory of the case's site, current, with Host.get_fact answering
    from the case's facts; yields (state, inventory). A new State: nothing of another case's run
    is kept (operations/runstate.py)."""
    hosts, group, site = case_site(case)
    # "rehearsal_group": true: the site's backup_rehearsal_hosts in the inventory as the group
    # `rehearsal` (inventories/rehearsal.py's shape), for the restore rehearsal's run()
    extra = [(n, {"ssh_hostname": a}) for n, a in group.get("backup_rehearsal_hosts", {}).items()] \
        if case.get("rehearsal_group") else []
    names = [n for n, _ in hosts + extra]
    facts = {n: {k: resolve(site, n, k, v) for k, v in host_facts(case[facts_key], n).items()} for n in names}

    unreachable = set(case.get("unreachable", ()))

    def get_fact(self, cls, *args, **kwargs):
        fact = cls.__name__
        if self.name in unreachable:  # as pyinfra's connector fails: operations/before.py's UNREACHABLE
            raise ConnectionError(f"{self.name}: could not connect (the case's unreachable)")
        if fact == "Bundle":  # facts.bundle: each part answered as if read on its own; one the case lacks is unknown
            from facts.bundle import fact_class

            parts, status = [], []
            for name, part_kwargs in kwargs["parts"]:
                part_cls = fact_class(name)
                timed_out = facts[self.name].get(part_cls.__name__) == TIMEOUT
                known = part_cls.__name__ in facts[self.name] and not timed_out
                parts.append(get_fact(self, part_cls, **dict(part_kwargs)) if known else None)
                status.append("124" if timed_out else "0")
            return {"parts": parts, "status": status, "error": None}
        if fact == "PeerReach" and fact not in facts[self.name]:
            # a case without a partition: every controller reaches every port of every other
            return {"reach": {a: {p: "open" for p in kwargs["ports"]} for a in kwargs["addresses"]}, "error": None}
        if fact not in facts[self.name]:
            raise KeyError(f"{self.name}: the case gives no {fact} fact (asked with {kwargs})")
        value = facts[self.name][fact]
        if "path" in kwargs:
            if kwargs["path"] not in value:
                raise KeyError(f"{self.name}: the case gives no {fact} for path {kwargs['path']}")
            value = value[kwargs["path"]]
        return copy.deepcopy(value)

    groups = {GROUP: (hosts, group), **({"rehearsal": (extra, {})} if extra else {})}
    inventory = Inventory((hosts + extra, {}), override_data=case.get("override"), **groups)
    state = State(inventory, Config())
    state.active_hosts = set(inventory)
    state.activated_hosts = set(inventory)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(Host, "get_fact", get_fact)
        with _secrets_in_env(), ctx_state.use(state), ctx_inventory.use(inventory), ctx_config.use(state.config):
            yield state, inventory
    finally:
        mp.undo()


def run(case: dict, facts_key: str = "facts", failed: tuple = ()) -> dict[str, list]:
    """Plan the case's components on every host with its facts; returns {host: [[operation
    name, [commands]], ...]}, operations without commands left out, in pyinfra's order.
    `failed`: hosts that failed earlier in the run; the commands are then those the operations
    yield when they execute (turn() checks the failed hosts at execution time)."""
    with planning(case, facts_key) as (state, inventory):
        names = [h.name for h in inventory]
        modules = [importlib.import_module(f"operations.{c}") for c in case["components"]]
        for name in (n for n in names if n not in case.get("unreachable", ())):  # pyinfra plans none there
            with ctx_host.use(inventory.get_host(name)):
                for module in modules:
                    (module.run if module.__name__.split(".")[-1] in COMMANDS else module.configure)()
        if failed:
            state.is_executing = True
            state.failed_hosts = {inventory.get_host(n) for n in failed}
        return planned(state, inventory)


def planned(state, inventory, prefix: str = "") -> dict[str, list]:
    """{host: [[operation name (without `prefix`), [commands]], ...]} of what `state` planned,
    operations without commands left out, in pyinfra's order."""
    out: dict[str, list] = {}
    for host in inventory:
        rows = []
        with ctx_host.use(host):
            for op_hash in state.get_op_order():
                if op_hash not in state.ops[host]:
                    continue
                commands = [render_command(c) for c in state.get_op_data_for_host(host, op_hash).command_generator()]
                if commands:
                    rows.append([", ".join(state.get_op_meta(op_hash).names).removeprefix(prefix), commands])
        out[host.name] = rows
    return out


def expected(case: dict) -> dict:
    """The case's expected commands with "{node01}" made node01's address."""
    _, _, site = case_site(case)
    return substitute(case["commands"], addresses(site), "")


LONG = 140  # commands longer than this are kept in a case as their first LONG characters + ANY


def as_case(case: dict, got: dict) -> dict:
    """The commands of a run as a case writes them: addresses as "{nodeNN}", long ones cut."""
    _, _, site = case_site(case)
    by_address = sorted(((a, n) for n, a in addresses(site).items()), key=lambda a: -len(a[0]))

    def symbolic(cmd: str) -> str:
        for address, name in by_address:
            cmd = re.sub(rf"(?<![0-9.]){re.escape(address)}(?![0-9])", "{" + name + "}", cmd)
        return cmd[:LONG] + ANY if len(cmd) > LONG + len(ANY) else cmd

    return {n: [[op, [symbolic(c) for c in cmds]] for op, cmds in rows] for n, rows in got.items()}


def matches(expected: dict, got: dict) -> bool:
    if set(expected) != set(got):
        return False
    for name, rows in expected.items():
        if len(rows) != len(got[name]):
            return False
        for (op, cmds), (gop, gcmds) in zip(rows, got[name]):
            if op != gop or len(cmds) != len(gcmds):
                return False
            for want, have in zip(cmds, gcmds):
                if not (have.startswith(want[: -len(ANY)]) if want.endswith(ANY) else have == want):
                    return False
    return True


if __name__ == "__main__":
    # Authoring aid: print a case's commands as the case would write them, to review and paste:
    #   python tests/unit/opkit.py tests/unit/operations/site/fresh.json [facts_after]
    import sys

    the_case = load_case(Path(sys.argv[1]))
    print(json.dumps(as_case(the_case, run(the_case, *sys.argv[2:])), indent=2))
