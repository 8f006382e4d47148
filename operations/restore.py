"""The disaster restore (issue 18 item 5; docs/operations.md "Backups"): the
cluster's data replaced by a backup, the data of before set aside, never deleted.

    pyinfra -y inventories/prod.py restore.py --data backup=20261206T010000Z-full --data confirm=20261206T010000Z-full
    pyinfra -y inventories/prod.py restore.py --data backup=latest --data confirm=ID

Decided once from every controller's GaleraNode fact and the backup node's manifests and
artifacts' sha256 (operations/backup_plan.py disaster()): refused, nothing changed, while any
controller's mariadb runs (or could not be read), without a confirmation naming the backup
restored, for a changed artifact, a broken chain, a backup of another cluster or one without
galera-info. Then, in order: on the backup node openstack-ha-restore (checked again there:
mariadbd stopped, every sha256, the chain; the datadir moved aside, the prepared copy in its
place, grastate.dat from the backup's position); on every other controller the datadir moved
aside (so it joins by SST); the backup node bootstrapped with the Galera plan's own command
(checked again: no peer runs Galera, the restored position), its accounts made right (the
joiners' state transfer logs in with the current SST password); the others started one at a
time, each waited for until Synced. A failed step stops every later one. Afterwards the
deploy is a no-op and the health report healthy.
"""

from __future__ import annotations

import os
import shlex

from pyinfra import host, logger
from pyinfra.api import deploy

from config import backup
from facts.backup import BackupArtifactSums, BackupManifests, manifests_of
from facts.galera import GaleraNode
from operations.backup_plan import CONFIRM_SWITCH, Restore, disaster, pick, restore_chain
from operations.backup import read_on
from operations.before import facts_of_all_controllers
from operations.common import (
    announce, blast_radius, controllers_in_run, decided_once, once, one_at_a_time, site, turn,
)
from operations.galera import accounts, join_commands, synced_wait
from operations.galera_plan import bootstrap_command


class RestoreRefused(Exception):
    """The restore may not run: the plan's refusals, one per line."""


def set_aside(datadir: str = backup.DATADIR) -> str:
    """Shell: this controller's datadir moved to DATADIR.before-restore-TIME (never deleted) and
    an empty one made, so that mariadb joins by a full state transfer; refused while mariadbd runs."""
    d = shlex.quote(datadir)
    return (f"if pgrep -x mariadbd >/dev/null || pgrep -x mysqld >/dev/null || systemctl is-active -q mariadb; then "
            f"echo \"$(hostname): mariadbd runs: its datadir is not set aside (stop mariadb on every controller)\" >&2; exit 1; fi; "
            f"t=$(date -u +%Y%m%dT%H%M%SZ); if [ -e {d} ]; then mv {d} {d}.before-restore-$t && "
            f"echo \"$(hostname): the former datadir is {datadir}.before-restore-$t\"; fi; "
            f"install -d -o mysql -g mysql -m 0755 {d}")


@once
def picture() -> dict:
    """Every controller's GaleraNode fact ({name: fact or None})."""
    return facts_of_all_controllers(GaleraNode)


def requested() -> tuple[str | None, str | None]:
    """(the backup asked for, None for the latest; the confirmation) from --data, else the environment."""
    wanted = str(host.data.get("backup") or "latest")
    confirm = host.data.get("confirm") or os.environ.get(CONFIRM_SWITCH) or None
    return (None if wanted == "latest" else wanted), (str(confirm) if confirm else None)


@decided_once("restore: ", RestoreRefused)
def decision() -> Restore:
    """What this run restores (backup_plan.disaster), shared by every host; a refusal ends the
    run before any change."""
    s = site()
    order = [c.name for c in s.controllers]
    if set(order) - controllers_in_run():
        raise RestoreRefused("a restore acts on every controller: run it without --limit, every controller reachable")
    node, directory = backup.node(order, s.data), s["backup_dir"]
    target, confirm = requested()
    # the health report's read of the backup node (the same arguments: one read per run)
    found = read_on(node, BackupManifests, directory=directory, calendar=s["backup_full_calendar"],
                  suffix=backup.MANIFEST_SUFFIX)
    if found.get("error"):
        raise RestoreRefused(f"could not read the backups in {directory} on {node}: {found['error']}")
    manifests = manifests_of(found)
    broken = tuple(found["broken"])
    chosen = pick(manifests, target)
    chain = restore_chain(chosen, manifests)[0] if chosen else ()
    names = tuple(m.artifact for m in chain if m.artifact)
    sums = read_on(node, BackupArtifactSums, directory=directory, names=names) if names else {"sums": {}}
    if sums.get("error"):
        raise RestoreRefused(f"could not read the sha256 of {', '.join(names)} on {node}: {sums['error']}")
    sha256s = {m.id: sums["sums"].get(m.artifact) for m in chain}
    d = disaster(manifests, target, sha256s, picture(), order, node, confirm, broken)
    if not d.allowed:
        raise RestoreRefused("\n".join([*d.refusals, f"restore: {len(d.refusals)} refusal(s); nothing was changed"]))
    return d


@deploy("Disaster restore")
def run():
    """The restore on the backup node, the other datadirs set aside, the bootstrap, the joins
    one at a time (see the module's doc)."""
    d = decision()
    s = site()
    order = [c.name for c in s.controllers]
    node = backup.node(order, s.data)
    backup_id = d.chain[-1]
    uuid, _, seqno = d.position.rpartition(":")
    mine = host.name == node
    host.log(f"restore {backup_id} (chain {' + '.join(d.chain)}, position {d.position}) from {node}")
    announce(mine, f"restore {backup_id} into {backup.DATADIR} (the datadir set aside), bootstrap the cluster from it")
    announce(not mine, f"set {backup.DATADIR} aside (never deleted), join the restored cluster by SST")
    turn(name=f"restore: {backup_id} restored on {node} (openstack-ha-restore)",
         commands=[f"{backup.RESTORE} {shlex.quote(backup_id)}"], run=mine)
    turn(name="restore: the datadir set aside, to join by SST", commands=[set_aside()], run=not mine)
    peers = [c.address for c in s.controllers if c.name != node]
    turn(name=f"restore: bootstrap {node} from the restored data",
         commands=[bootstrap_command(node, peers, (uuid, seqno)), synced_wait()], run=mine)
    accounts(name="restore: the database accounts (the joiners' state transfer logs in with them)", run=mine)
    for name, turn_mine in one_at_a_time([n for n in order if n != node]):
        turn(name=f"restore: {name} joins by SST, waiting for Synced", commands=join_commands(name, repair=False),
             run=turn_mine)
    if host.name == order[-1]:
        host.log(f"restored {backup_id}: now run the deploy (it must be a no-op) and the health report, "
                 f"e.g. make deploy INVENTORY=... && make health INVENTORY=...; the former datadirs are "
                 f"{backup.DATADIR}.before-restore-* on every controller (never deleted)", logger.warning)
    blast_radius()
