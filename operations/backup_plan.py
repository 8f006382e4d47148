"""Backups' decisions, pure (docs/operations.md "Backups"): whether a backup may be taken
now and of which kind, what retention deletes, and whether a backup may be restored.

Inputs are plain data: every controller's GaleraNode fact (facts/galera.py), the controllers
in maintenance (operations/maintenance_marker.py), the manifests of the backup directory
(facts/backup_manifest.py), sizes and checksums the host measured. Outputs are frozen
dataclasses whose refusals say which node or backup is at fault and what to do. Tested as a
table (tests/unit/test_backup_plan.py); the backup script (files/templates/backup/) checks
the same conditions again on the host before it acts.

- A backup is taken only when every controller is Synced in one Primary component (the
  backup node desyncs itself: a cluster already short of a Synced member has no margin),
  never on the database writer (its desync would stall every write), never on a controller
  in maintenance, and only with room for the last full's size plus a margin.
- An incremental chains to the newest good backup of the chain that starts at the newest
  good full of this cluster; no such full, or a broken chain, makes it a full, said.
- Retention deletes what is older than its days, except the newest verified full, the
  newest full, and every backup an incremental that is kept still needs.
- A restore refuses a changed artifact (sha256), a broken incremental chain, a backup of
  another cluster, one without galera-info, a target where mariadb runs, and (disaster) an
  operator who did not confirm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from facts.backup_manifest import Manifest
from facts.galera_rules import components, serving
from operations.galera_plan import describe

CONFIRM_SWITCH = "HA_RESTORE_CONFIRM"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


# --- taking a backup ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Take:
    allowed: bool
    kind: str  # "full" or "incremental" (what would be taken)
    parent: str | None  # the backup an incremental applies on
    need_bytes: int | None  # free space wanted in the backup directory
    refusals: tuple[str, ...] = ()  # why not, one line each
    notes: tuple[str, ...] = ()  # said with the backup (a full instead of an incremental, ...)


def cluster_uuid(states: dict) -> str | None:
    """The cluster's state UUID as its serving members report it (None: none serves)."""
    uuids = {st.get("wsrep_cluster_state_uuid") for st in states.values() if serving(st)}
    return uuids.pop() if len(uuids) == 1 else None


def newest_full(manifests: list[Manifest], uuid: str | None) -> Manifest | None:
    """The newest good full backup of cluster `uuid` (any cluster when None)."""
    fulls = [m for m in manifests if m.kind == "full" and m.ok and (uuid is None or m.galera_uuid == uuid)]
    return max(fulls, key=lambda m: m.started, default=None)


def chain_from(full: Manifest, manifests: list[Manifest]) -> tuple[tuple[Manifest, ...], str]:
    """The good backups chained to `full`, in order (each incremental applies on the one
    before, by its parent), and why the chain is broken ("" if not): two incrementals on one
    link, LSNs that do not follow on, or an incremental since the full whose parent is gone."""
    later = [m for m in manifests if m.kind == "incremental" and m.ok and m.started >= full.started]
    chain = [full]
    while kids := sorted((m for m in later if m.parent == chain[-1].id), key=lambda m: m.started):
        last, m = chain[-1], kids[0]
        if None not in (m.lsn_from, last.lsn_to) and m.lsn_from != last.lsn_to:
            return tuple(chain), f"{m.id} starts at LSN {m.lsn_from}, its parent {last.id} ends at {last.lsn_to}"
        if len(kids) > 1:
            return tuple(chain), f"{kids[1].id} applies on {last.id}, not on the newest link {m.id}"
        chain.append(m)
    ids = {m.id for m in manifests}
    for m in sorted(later, key=lambda m: m.started):
        if m.parent not in ids:
            return tuple(chain), f"{m.id} applies on {m.parent}, which is not among the backups"
    return tuple(chain), ""


def take(states: dict[str, dict | None], order: list[str], node: str, writer: str, away=frozenset(),
         manifests: list[Manifest] = (), asked: str = "full", free_bytes: int | None = None,
         datadir_bytes: int | None = None, margin_percent: int = 50) -> Take:
    """Whether a backup may be taken on `node` now, and which. Pure.

    + states: every controller's GaleraNode fact ({name: fact}; None or absent: unread)
    + order: the inventory's controllers; writer: Site.writer; away: those in maintenance
    + manifests: the backup directory's (loaded and valid)
    + asked: "full" or "incremental" (the timer that fired)
    + free_bytes: free space of the backup directory; datadir_bytes: the datadir's size
    """
    refusals, notes = [], []
    if node not in order:
        refusals.append(f"{node} is not a controller of this site: set backup_node to one of {', '.join(order)}")
    if node == writer:
        refusals.append(f"{node} is the database writer: a backup desyncs its node, which would stall every write; "
                        "set backup_node to another controller")
    if node in away:
        refusals.append(f"{node} is in maintenance: take it back in (maintenance.py in {node}) or wait")
    for n in order:
        st = states.get(n)
        if not serving(st):
            refusals.append(f"{describe(n, st)}: not Synced in the Primary component; a backup waits for every member")
    comps = components(states, order)
    if len(comps) > 1:
        refusals.append(f"{len(comps)} Primary components ({'; '.join(', '.join(c.nodes) for c in comps)}): "
                        "a split cluster is repaired before it is backed up")
    uuid = cluster_uuid(states)
    full = newest_full(list(manifests), uuid)
    kind, parent = "full", None
    if asked == "incremental":
        if full is None:
            notes.append("no good full backup of this cluster to chain to: taking a full instead")
        else:
            chain, broken = chain_from(full, list(manifests))
            if broken:
                notes.append(f"the incremental chain of {full.id} is broken ({broken}): taking a full instead")
            else:
                kind, parent = "incremental", chain[-1].id
    sized = full or newest_full(list(manifests), None)
    base = sized.artifact_bytes if sized and sized.artifact_bytes is not None else datadir_bytes
    need = None if base is None else base * (100 + margin_percent) // 100
    what = f"the last full {sized.id}'s {_mib(base)}" if sized and sized.artifact_bytes is not None else f"the datadir's {_mib(base or 0)}"
    if need is None:
        refusals.append("no size to check the free space against (no full backup, datadir size unknown)")
    elif free_bytes is None:
        refusals.append("the free space of the backup directory is unknown: not starting a backup that may fill it")
    elif free_bytes < need:
        refusals.append(f"{node}: {_mib(free_bytes)} free in the backup directory, a backup wants {_mib(need)} "
                        f"({what} + {margin_percent}%): free space, or lower backup_retention_days")
    return Take(not refusals, kind, parent, need, tuple(refusals), tuple(notes))


# --- retention ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    delete: tuple[str, ...]  # backup ids, oldest first
    keep: tuple[str, ...]
    why_kept: tuple[tuple[str, str], ...] = ()  # (id, why) for an old backup kept


def retention(manifests: list[Manifest], now: datetime, days: int) -> Retention:
    """What retention deletes: backups started more than `days` ago, except the newest
    verified full, the newest full, and whatever a kept incremental applies on. Pure."""
    cutoff = now - timedelta(days=days)
    by_id = {m.id: m for m in manifests}
    old = {m.id for m in manifests if m.started < cutoff}
    why: dict[str, str] = {}
    fulls = [m for m in manifests if m.kind == "full" and m.status == "ok"]
    verified = max((m for m in fulls if m.verified), key=lambda m: m.started, default=None)
    newest = max(fulls, key=lambda m: m.started, default=None)
    if verified and verified.id in old:
        why[verified.id] = "the newest verified full"
    if newest and newest.id in old and newest.id not in why:
        why[newest.id] = "the newest full"
    keep = {m.id for m in manifests if m.id not in old} | set(why)
    # an incremental is kept with its full; what a kept one applies on is kept
    root = {}
    for m in manifests:
        seen, cur = set(), m
        while cur.kind == "incremental" and cur.parent in by_id and cur.id not in seen:
            seen.add(cur.id)
            cur = by_id[cur.parent]
        root[m.id] = cur.id if cur.kind == "full" else None
    keep |= {m.id for m in manifests if m.kind == "incremental" and m.status == "ok" and root[m.id] in keep}
    for kept in sorted(keep):
        cur, seen = by_id[kept], {kept}
        while cur.status == "ok" and cur.kind == "incremental" and cur.parent in by_id and cur.parent not in seen:
            cur = by_id[cur.parent]
            seen.add(cur.id)
            if cur.id not in keep:
                keep.add(cur.id)
                why[cur.id] = f"{kept} applies on it"
    order = sorted(manifests, key=lambda m: m.started)
    return Retention(tuple(m.id for m in order if m.id not in keep), tuple(m.id for m in order if m.id in keep),
                     tuple((i, why[i]) for i in sorted(why, key=lambda i: by_id[i].started)))


# --- restoring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restore:
    allowed: bool
    chain: tuple[str, ...]  # the full first, then the incrementals to apply, in order
    position: str | None  # uuid:seqno for grastate.dat, from the target's galera-info
    refusals: tuple[str, ...] = ()


def restore_chain(target: Manifest, manifests: list[Manifest]) -> tuple[tuple[Manifest, ...], str]:
    """The backups a restore of `target` applies, full first, and why the chain is broken."""
    by_id = {m.id: m for m in manifests}
    chain = [target]
    while chain[-1].kind == "incremental":
        cur = chain[-1]
        parent = by_id.get(cur.parent)
        if parent is None:
            return tuple(reversed(chain)), f"{cur.id} applies on {cur.parent}, which is not among the backups"
        if parent in chain:
            return tuple(reversed(chain)), f"{cur.id}'s parents loop back to {parent.id}"
        if not parent.ok:
            return tuple(reversed(chain)), f"{cur.id} applies on {parent.id}, which {parent.error or parent.verify_note or 'failed'}"
        if None not in (cur.lsn_from, parent.lsn_to) and cur.lsn_from != parent.lsn_to:
            return tuple(reversed(chain)), f"{cur.id} starts at LSN {cur.lsn_from}, {parent.id} ends at {parent.lsn_to}"
        chain.append(parent)
    return tuple(reversed(chain)), ""


def pick(manifests: list[Manifest], target: str | None) -> Manifest | None:
    """Backup `target`, or (None) the newest good one; None when there is no such backup."""
    if target is None:
        return max((m for m in manifests if m.ok), key=lambda m: m.started, default=None)
    return next((m for m in manifests if m.id == target), None)


def restore(manifests: list[Manifest], target: str | None, sha256s: dict[str, str | None], cluster: str | None,
            states: dict[str, dict | None], disaster: bool = False, confirmed: bool = False) -> Restore:
    """Whether backup `target` (None: the newest good one) may be restored onto the nodes of
    `states` (their GaleraNode facts). Pure.

    + sha256s: {backup id: sha256 of its artifact as found now} (None: artifact missing)
    + cluster: the UUID of the cluster the backups protect (None: not checked)
    + disaster: restoring over the production cluster, which the operator must confirm
    """
    refusals = []
    manifests = list(manifests)
    chosen = pick(manifests, target)
    if chosen is None:
        return Restore(False, (), None, ("no good backup to restore",) if target is None else (f"no backup named {target}",))
    if chosen.status != "ok":
        refusals.append(f"{chosen.id} failed when it was taken ({chosen.error})")
    chain, broken = restore_chain(chosen, manifests)
    if broken:
        refusals.append(f"broken incremental chain: {broken}")
    for m in chain:  # the full, or the backup named (its chain prepared by the verify step): the links between are ok
        if m.verified is False:
            refusals.append(f"{m.id} failed its verification ({m.verify_note})")
    for m in chain:
        got = sha256s.get(m.id)
        if got is None:
            refusals.append(f"{m.id}: artifact {m.artifact} not found")
        elif got != m.sha256:
            refusals.append(f"{m.id}: sha256 of {m.artifact} is {got[:12]}..., the manifest says {str(m.sha256)[:12]}...: "
                            "the artifact changed since it was taken (take it from the copy)")
        if cluster is not None and m.galera_uuid is not None and m.galera_uuid != cluster:
            refusals.append(f"{m.id} is a backup of cluster {m.galera_uuid}, not of this cluster ({cluster})")
    if chosen.galera_uuid is None:
        refusals.append(f"{chosen.id} was taken without galera-info: its position is unknown, grastate.dat cannot be "
                        "written and the restored node would start a new history")
    running = [n for n, st in states.items() if st is None or st.get("mysqld") == "running" or st.get("active")]
    if running:
        said = "; ".join(describe(n, states[n]) for n in running)
        refusals.append(f"restore onto a running cluster ({said}): stop mariadb on every node first "
                        "(a node that did not answer counts as running)")
    if disaster and not confirmed:  # one line, both ways of confirming
        refusals.append(f"a disaster restore replaces the cluster's data (set aside, never deleted): "
                        f"confirm with --data confirm={chosen.id} or {CONFIRM_SWITCH}={chosen.id} "
                        f"(make restore BACKUP={target or 'latest'} CONFIRM={chosen.id})")
    return Restore(not refusals, tuple(m.id for m in chain), chosen.position, tuple(refusals))


# --- the disaster restore (restore.py) ------------------------------------------------------------

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def stopped_cluster(states: dict[str, dict | None]) -> str | None:
    """The cluster the controllers' datadirs hold (their grastate.dat uuid) when they agree;
    None when none holds one or they differ (then the backup's cluster is not checked)."""
    uuids = {st.get("grastate_uuid") for st in states.values() if st} - {None, "", ZERO_UUID}
    return uuids.pop() if len(uuids) == 1 else None


def disaster(manifests: list[Manifest], target: str | None, sha256s: dict[str, str | None],
             states: dict[str, dict | None], order: list[str], node: str, confirm: str | None,
             broken: tuple[str, ...] = ()) -> Restore:
    """Whether restore.py may replace the cluster's data with backup `target` (None: the
    newest good one), restored on `node` (the backup node, which holds the backups) and
    bootstrapped there, the other controllers joining by SST. Pure.

    + states: every controller's GaleraNode fact (None: unread, counted as running)
    + sha256s: {backup id: sha256 of its artifact as found on `node` now} (None: missing)
    + confirm: the backup id the operator confirmed (--data confirm=ID); it must name the one restored
    + broken: the manifests of the backup directory that could not be read (said with a refusal)
    """
    chosen = pick(list(manifests), target)
    extra = []
    if node not in order:
        extra.append(f"{node} is not a controller of this site: backup_node names where the backups are")
    missing = [n for n in order if n not in states]
    if missing:
        extra.append(f"the Galera state of {', '.join(missing)} was not read: every controller is checked before a restore")
    confirmed = chosen is not None and confirm == chosen.id
    if confirm and chosen is not None and confirm != chosen.id:
        extra.append(f"the confirmation names {confirm}, the backup restored would be {chosen.id}: confirm that one")
    decided = restore(manifests, target, sha256s, stopped_cluster(states), states, disaster=True,
                      confirmed=confirmed or bool(confirm))
    refusals = list(decided.refusals) + extra  # unconfirmed: restore() said how to confirm
    if refusals and broken:
        refusals.append(f"{len(broken)} manifest(s) in the backup directory could not be read: {'; '.join(broken)}")
    return Restore(not refusals, decided.chain, decided.position, tuple(refusals))
