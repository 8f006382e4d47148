"""Galera's cluster rules, written once: what "serving" means (SERVING), which Primary
components the controllers report, a node's position. Pure (no pyinfra, no I/O): used by the
fact (facts/galera.py), the deploy's plan (operations/galera_plan.py), the maintenance plan,
the health model and, through its template, the clustercheck script (config/files.py)."""

from __future__ import annotations

from dataclasses import dataclass

ZERO_UUID = "00000000-0000-0000-0000-000000000000"

# The rule: a node serves (takes its share of the cluster, may get the writes) when its status
# shows each of these. plan(), the report and the clustercheck script all read it from here.
SERVING = {"wsrep_cluster_status": "Primary", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON"}


def in_primary(st: dict | None) -> bool:
    return bool(st) and st.get("wsrep_cluster_status") == "Primary"


def serving(st: dict | None) -> bool:
    """Synced in a Primary component and ready (SERVING): the node takes its share of the cluster."""
    return bool(st) and all(st.get(k) == v for k, v in SERVING.items())


def not_serving(st: dict) -> list[str]:
    """What keeps a node from serving, one `key is X (wanted Y)` per unmet condition of SERVING."""
    return [f"{k} is {st.get(k)} (wanted {v})" for k, v in SERVING.items() if st.get(k) != v]


# What a node desynced by its own backup reports (the backup script sets wsrep_desync=ON while
# mariadb-backup streams): the fact adds backup=running when a backup service runs there.
DESYNCED = "Donor/Desynced"


def desynced_by_backup(st: dict | None) -> bool:
    """The node serves but for its state, Donor/Desynced while one of its backups runs
    (facts.galera.GaleraNode `backup`): bounded and deliberate, Synced again when the backup
    ends (its script sets wsrep_desync=OFF whatever happens)."""
    return (bool(st) and st.get("backup") == "running" and st.get("wsrep_local_state_comment") == DESYNCED
            and all(st.get(k) == v for k, v in SERVING.items() if k != "wsrep_local_state_comment"))


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
