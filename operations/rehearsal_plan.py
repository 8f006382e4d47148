"""The restore rehearsal's decisions, pure (issue 18 item 4; docs/operations.md "Backups"):
which backup and chain, read from where, restored onto which hosts in which order, and every
refusal. operations/rehearsal.py reads the facts and acts; tested as a table
(tests/unit/test_rehearsal_plan.py).

A rehearsal proves a backup by restoring it where it cannot harm: hosts the inventory names
for it (backup_rehearsal_hosts), never a controller. The production cluster is only read: the
manifests and artifacts of the backup node's directory, or of its off-node copy (a controller:
an SSH host outside the inventory cannot be read by the run). The backup's own checks are
backup_plan.restore()'s (sha256, chain, galera-info, verification); the hosts' are
config/rehearsal.py's (preflight's). The first host is bootstrapped from the prepared backup,
the others join it by SST one at a time; every restored host is compared with the manifest's
per-table sums (facts/backup_manifest.py compare()). An incremental is not verified when taken
(its manifest has no sums): its restored hosts are compared with the bootstrapped one, said.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.rehearsal import KEY, host_problems
from facts.backup_manifest import Manifest
from operations.backup_plan import pick, restore, restore_chain

SOURCES = ("node", "copy")  # --data from=node (default) | copy


@dataclass(frozen=True)
class Rehearsal:
    allowed: bool
    backup: str | None  # the backup restored (the chain's last)
    chain: tuple[str, ...]  # full first, then each incremental applied, in order
    files: tuple[str, ...]  # what is read from the source, in the chain's order
    position: str | None  # uuid:seqno of the restored cluster (grastate.dat)
    source: str | None  # the controller the backup is read from
    directory: str | None  # its directory there
    bootstrap: str | None  # the rehearsal host bootstrapped from the backup
    joiners: tuple[str, ...] = ()  # the others, joining by SST in this order
    reference: str = "manifest"  # what the restored hosts are compared with: "manifest" or the bootstrap host
    refusals: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def source_of(source: str, backup_node: str, copy_kind: str, copy_name: str, backup_dir: str,
              copy_dir: str) -> tuple[str | None, str | None, str | None]:
    """(the controller read, its directory, refusal) for --data from=node|copy."""
    if source not in SOURCES:
        return None, None, f"from={source}: say from=node (the backup node {backup_node}) or from=copy (its copy on {copy_name})"
    if source == "node":
        return backup_node, backup_dir, None
    if copy_kind != "controller":
        return None, None, (f"the copy is on {copy_name}, an SSH host outside the inventory that this run cannot read: "
                            f"rehearse from=node ({backup_node}), or copy the backup to a controller")
    return copy_name, copy_dir, None


def files_of(chain: tuple[Manifest, ...], suffix: str = ".manifest.json") -> tuple[str, ...]:
    """The files a restore of `chain` needs beside it: each link's manifest, artifact and the
    artifact's .sha256 (the prepare checks the artifact against both)."""
    return tuple(f for m in chain if m.artifact for f in (f"{m.id}{suffix}", m.artifact, f"{m.artifact}.sha256"))


def plan(manifests: list[Manifest], target: str | None, sha256s: dict[str, str | None],
         hosts: dict[str, str], in_run: set[str] | frozenset[str], controllers: list[tuple[str, str]],
         vips: list[str | None], source: str, directory: str, broken: tuple[str, ...] = ()) -> Rehearsal:
    """Whether backup `target` (None: the newest good one) may be rehearsed onto `hosts` ({name:
    address}, backup_rehearsal_hosts, in their order). Pure.

    + sha256s: {backup id: sha256 of its artifact as found on `source` now} (None: missing)
    + in_run: the rehearsal hosts this run reaches (the inventory's rehearsal group, connected)
    + controllers: the site's (name, address); vips: the VIP and external VIP
    + source, directory: where the backup is read (source_of())
    + broken: the manifests of that directory that could not be read (said with a refusal)
    """
    refusals, notes = [], []
    if not hosts:
        refusals.append(f"{KEY} is empty: name the rehearsal hosts ({{name: address}}, not controllers) in the "
                        "controllers group data; on the lab: inventories/lab.py names node08 and node09")
    for host, message, fix in host_problems(hosts, controllers, vips):
        refusals.append(f"{KEY}.{host}: {message}: {fix}")
    missing = [h for h in hosts if h not in in_run]
    if missing:
        refusals.append(f"rehearsal host(s) {', '.join(missing)} not in this run (unreachable, or not in the inventory's "
                        f"rehearsal group): run make restore-rehearsal, which adds {KEY} to the inventory; on the lab, "
                        "bring them up first (python -m lab add node08 node09)")
    chosen = pick(list(manifests), target)
    # states={}: rehearsal hosts are disposable, a mariadb found running there is stopped;
    # cluster=None: the backup is not checked against the controllers (never read here)
    decided = restore(manifests, target, sha256s, None, {})
    refusals += decided.refusals
    chain = restore_chain(chosen, list(manifests))[0] if chosen else ()
    names = list(hosts)
    bootstrap, joiners = (names[0], tuple(names[1:])) if names else (None, ())
    if names and not joiners:
        notes.append(f"one rehearsal host ({bootstrap}): the backup is restored and compared, no state transfer "
                     "is rehearsed (name 2 or 3 hosts for that)")
    reference = "manifest"
    if chosen is not None and not chosen.tables:
        if chosen.kind == "incremental":
            reference = bootstrap or "manifest"
            notes.append(f"{chosen.id} is an incremental: its manifest holds no table sums (only fulls are verified "
                         f"when taken); the restored hosts are compared with {bootstrap}, the bootstrapped one")
        else:
            refusals.append(f"{chosen.id} has no table sums in its manifest (not verified yet): run "
                            "openstack-ha-backup-verify on it, or rehearse a verified full")
    if refusals and broken:
        refusals.append(f"{len(broken)} manifest(s) in {directory} on {source} could not be read: {'; '.join(broken)}")
    return Rehearsal(not refusals, chosen.id if chosen else None, decided.chain, files_of(chain),
                     decided.position, source, directory, bootstrap, joiners, reference,
                     tuple(refusals), tuple(notes))
