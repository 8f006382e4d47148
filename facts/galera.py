"""Galera: a node's state as the deploy and the report need it, its accounts, and the cluster
rules (what "serving" means, which Primary components exist), written once and used by the
deploy's plan, the health report and, through its template, the clustercheck."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pyinfra.api import FactBase

from config.files import GALERA_CNF
from facts.probe import NO_OUTPUT, key_values

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# Read only when mariadbd starts (the donor only when it joins): a running member needs no
# restart for them. Comments never need one either.
# Also wsrep_sst_auth: in a file of its own since issue 24 (a new one is set at runtime), so the
# galera.cnf of before, which held it, asks no restart, and this hash never covers a secret.
MEMBERSHIP_LINES = ("wsrep_cluster_address", "wsrep_sst_donor", "#", "wsrep_sst_auth")
SANS_PATTERNS = " ".join(f"-e '^{k}'" for k in MEMBERSHIP_LINES)

# The rule: a node serves (takes its share of the cluster, may get the writes) when its status
# shows each of these. plan(), the report and the clustercheck script all read it from here.
SERVING = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON"}
STATUS_KEYS = (*SERVING, "wsrep_cluster_size", "wsrep_last_committed", "wsrep_incoming_addresses",
               "wsrep_cluster_state_uuid", "wsrep_connected")
STATUS_QUERY = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(", ".join(f"'{k}'" for k in STATUS_KEYS))


def serving_check(status_query: str = STATUS_QUERY) -> str:
    """Shell that succeeds when the local node serves (root over the unix socket)."""
    tests = " && ".join(f"echo \"$s\" | grep -qx '{k}.{v}'" for k, v in SERVING.items())
    return f"s=$(mysql -N -B -e \"{status_query}\") && {tests}"


def sans_members(text: str) -> str:
    """SHA1 of a galera.cnf without its membership, comment and wsrep_sst_auth lines, as `grep -v
    -e '^wsrep_cluster_address' -e '^wsrep_sst_donor' -e '^#' -e '^wsrep_sst_auth' | sha1sum`
    computes it on the host."""
    lines = [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]
    kept = "".join(line for line in lines if not line.startswith(MEMBERSHIP_LINES))
    return hashlib.sha1(kept.encode()).hexdigest()

# What GaleraNode(recover=True) reports beyond recover=False (the same command and process()
# but for galera_recovery's line): dropped where the report reuses the plan's read.
RECOVERY_KEYS = ("recovered_position",)


def without_recovery(st: dict) -> dict:
    """A GaleraNode read with recover=True, as recover=False reads the same node."""
    return {k: v for k, v in st.items() if k not in RECOVERY_KEYS}


class GaleraNode(FactBase):
    """
    This node's Galera state, as the deploy decides from it and the report shows it:

    .. code:: python

        {"installed": True, "active": True, "query": "ok", "mysqld": "running",
         "wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced",
         "wsrep_ready": "ON", "wsrep_connected": "ON",
         "wsrep_cluster_size": "3", "wsrep_last_committed": "1234",
         "wsrep_incoming_addresses": "10.0.0.11:3306,...", "wsrep_cluster_state_uuid": "2a0c...",
         "grastate_uuid": "2a0c...", "grastate_seqno": "-1", "grastate_safe_to_bootstrap": "0",
         "recovered_position": "2a0c...:1234", "cnf_sans_members": "5e1f...", "error": None}

    `query` is "failed" when mariadbd runs but did not answer (starting, in a state transfer,
    hung): a state of its own, never read as "not Synced". recovered_position (only with
    recover=True) when mariadbd is not running and grastate.dat has no seqno (it crashed, or
    its start failed): `galera_recovery` reads the last committed position from InnoDB, as
    mariadb.service's ExecStartPre does at every start. cnf_sans_members: the SHA1 of its
    galera.cnf without the lines a running member does not need a restart for (a restart an
    earlier run left undone is facts.host.ServiceStates' `pending`, the marker's one reader).
    `error` when the output was cut short.
    """

    @staticmethod
    def default():
        return {"installed": None, "active": None, "error": NO_OUTPUT}

    def command(self, recover: bool = True):
        recovery = (
            "if ! pgrep -x mariadbd >/dev/null && ! pgrep -x mysqld >/dev/null && "
            "grep -q '^seqno:[[:space:]]*-1' /var/lib/mysql/grastate.dat 2>/dev/null; then "
            "timeout 120 galera_recovery 2>/dev/null | sed -n 's/^--wsrep_start_position=/recovered_position=/p'; fi; "
        ) if recover else ""
        return (
            "if ! command -v mysqld >/dev/null 2>&1 && ! test -x /usr/sbin/mariadbd; then echo installed=no; "
            "echo end=yes; exit 0; fi; echo installed=yes; "
            "systemctl is-active -q mariadb && echo active=yes || echo active=no; "
            "if pgrep -x mariadbd >/dev/null || pgrep -x mysqld >/dev/null; then echo mysqld=running; "
            f"if out=$(timeout 10 mysql --connect-timeout=5 -N -B -e \"{STATUS_QUERY}\" 2>/dev/null); "
            "then echo query=ok; printf '%s\\n' \"$out\" | tr '\\t' '='; else echo query=failed; fi; fi; "
            "sed -n 's/^\\(uuid\\|seqno\\|safe_to_bootstrap\\):[[:space:]]*/grastate_\\1=/p' /var/lib/mysql/grastate.dat 2>/dev/null; "
            f"test -f {GALERA_CNF} && echo cnf_sans_members=$(grep -v {SANS_PATTERNS} {GALERA_CNF} "
            "| sha1sum | cut -d' ' -f1); "
            f"{recovery}echo end=yes"
        )

    def process(self, output):
        facts = key_values(output)
        if facts.pop("end", None) != "yes" or "installed" not in facts:
            return {**self.default(), "error": "galera state: output cut short (no end marker)"}
        return {
            "installed": facts.pop("installed") == "yes",
            "active": facts.pop("active", None) == "yes",
            **facts,
            "error": None,
        }


class MysqlAccounts(FactBase):
    """
    Accounts and whether the test database exists, read through root's unix socket:

    .. code:: python

        {"users": {"haproxy@100.2.30.41": "", "admin@localhost": "*94BD..."}, "test_db": False,
         "error": None}
    """

    @staticmethod
    def default():
        return {"users": {}, "test_db": False, "error": NO_OUTPUT}

    def command(self):
        return (
            "timeout 10 mysql -N -B -e \"SELECT CONCAT('user=', user, '@', host, '=', authentication_string) "
            "FROM mysql.user; SELECT 'test_db=yes' FROM information_schema.schemata WHERE schema_name='test'\" "
            "2>&1 && echo ok=yes || echo ok=no"
        )

    def process(self, output):
        result = {"users": {}, "test_db": False, "error": "mysql: no answer (output cut short)"}
        said = ""
        for line in output:
            kind, _, rest = line.partition("=")
            if kind == "user":
                name, _, auth = rest.partition("=")
                result["users"][name] = auth
            elif kind == "test_db":
                result["test_db"] = True
            elif kind == "ok":
                result["error"] = None if rest == "yes" else f"mysql: {said or 'failed'}"
            else:
                said = line.strip()[:300]
        return result


# --- the rules, written once: used by the plan, the health report and the clustercheck ------


def in_primary(st: dict | None) -> bool:
    return bool(st) and st.get("wsrep_cluster_status") == "Primary"


def serving(st: dict | None) -> bool:
    """Synced in a Primary component and ready (SERVING): the node takes its share of the cluster."""
    return bool(st) and all(st.get(k) == v for k, v in SERVING.items())


def not_serving(st: dict) -> list[str]:
    """What keeps a node from serving, one `key is X (wanted Y)` per unmet condition of SERVING."""
    return [f"{k} is {st.get(k)} (wanted {v})" for k, v in SERVING.items() if st.get(k) != v]


def has_state(st: dict | None) -> bool:
    """The node holds Galera state of some cluster (grastate.dat with a cluster UUID)."""
    return bool(st) and (st.get("grastate_uuid") or ZERO_UUID) != ZERO_UUID


def unanswered(st: dict | None) -> bool:
    """mariadbd runs but did not answer (starting, in a state transfer, hung)."""
    return bool(st) and st.get("mysqld") == "running" and st.get("query") == "failed"


def position(st: dict) -> int | None:
    """The last transaction a stopped or non-Primary node committed; None when unknown."""
    for value in (st.get("wsrep_last_committed"), st.get("grastate_seqno"),
                  (st.get("recovered_position") or "").rpartition(":")[2]):
        try:
            if value is not None and int(value) >= 0:
                return int(value)
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class Component:
    """A Primary component as its members report it."""

    uuid: str
    nodes: tuple  # controllers that report being in it, inventory order
    members: frozenset  # its members (controller names, or addresses the inventory lacks)
    size: int
    last_committed: int | None


def _members(st: dict, names_by_address: dict[str, str]) -> frozenset:
    found = set()
    for item in (st.get("wsrep_incoming_addresses") or "").split(","):
        addr = item.strip().rpartition(":")[0] or item.strip()
        if addr and addr != "AUTO":
            found.add(names_by_address.get(addr, addr))
    return frozenset(found)


def components(states: dict, order: list[str], addresses: dict[str, str] | None = None) -> list[Component]:
    """The Primary components the controllers report, largest first. Nodes of one cluster
    UUID whose member lists are disjoint are two components: a split brain. Pure."""
    by_address = {a: n for n, a in (addresses or {}).items()}
    groups: list[list] = []  # [uuid, nodes, members]
    for name in order:
        st = states.get(name)
        if not in_primary(st):
            continue
        uuid, members = st.get("wsrep_cluster_state_uuid") or "", _members(st, by_address) or frozenset({name})
        for g in groups:
            if g[0] == uuid and (g[2] & members or not st.get("wsrep_incoming_addresses")):
                g[1].append(name)
                g[2] |= members
                break
        else:
            groups.append([uuid, [name], set(members)])
    out = []
    for uuid, nodes, members in groups:
        sizes = [int(states[n].get("wsrep_cluster_size") or 0) for n in nodes]
        commits = [position(states[n]) for n in nodes if position(states[n]) is not None]
        out.append(Component(uuid, tuple(nodes), frozenset(members), max(sizes + [len(members)]),
                             max(commits) if commits else None))
    return sorted(out, key=lambda c: -c.size)


def strangers(states: dict[str, dict], addresses: dict[str, str]) -> list[str]:
    """Members of the running cluster at an address no controller of the inventory has: a
    controller taken out of the inventory while its mariadb still runs. Pure."""
    known = set(addresses.values())
    seen = set()
    for st in states.values():
        if in_primary(st):
            seen |= {m for m in _members(st, {}) if m}
    return sorted(seen - known)
