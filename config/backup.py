"""Backups' site values resolved (docs/operations.md "Backups"): which controller takes them,
where their copy goes, and the backup script rendered with them.

Pure: preflight (config/preflight.py) checks the same resolution before anything renders,
operations/backup_plan.py decides whether a backup may be taken and what retention deletes.
The deploy (operations/backup.py) installs the script, its services and timers on backup_node
from config/files.py's table, rendered with script_values().
"""

from __future__ import annotations

from dataclasses import dataclass

from config.paths import BACKUP_KNOWN_HOSTS, BACKUP_SCRIPT, BACKUP_SSH_KEY

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"  # the copy controller's (root's: the copy runs as root)
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"  # the copy controller's, pinned on backup_node
from facts.galera import serving_check
from config.site import Controller, Site

DATADIR = "/var/lib/mysql"  # MariaDB's datadir on Debian: a backup is never kept inside it
SCRIPT = BACKUP_SCRIPT
# The restore tooling (issue 18 items 3, 5) beside the script ({{ b.script }}-prepare in the
# templates): {installed path: template}, rendered by config/files.py render_backup_tool().
PREPARE = f"{SCRIPT}-prepare"
VERIFY = f"{SCRIPT}-verify"
RESTORE = "/usr/local/sbin/openstack-ha-restore"
TOOLS = {
    PREPARE: "backup/openstack-ha-backup-prepare.j2",
    VERIFY: "backup/openstack-ha-backup-verify.j2",
    RESTORE: "backup/openstack-ha-restore.j2",
}
# ssh and scp to the copy host: the backup's own key, the copy host's key pinned (written by the
# deploy: operations/backup.py), never a prompt.
SSH_OPTIONS = (f"-o BatchMode=yes -o IdentitiesOnly=yes -i {BACKUP_SSH_KEY} -o StrictHostKeyChecking=yes "
               f"-o UserKnownHostsFile={BACKUP_KNOWN_HOSTS} -o ConnectTimeout=10")
MANIFEST_SUFFIX = ".manifest.json"
# The compressors Debian 12 offers on the controllers: (command, decompress, artifact suffix).
COMPRESSORS = {"gzip": ("gzip -c", "gzip -dc", "gz"), "zstd": ("zstd -q -c -T0", "zstd -q -dc", "zst")}


def writer(names: list[str]) -> str:
    """The database writer of an inventory's controllers: the site model's (Site.writer)."""
    return Site(controllers=[Controller(n, "", 0) for n in names], data={}).writer


def node(names: list[str], data: dict) -> str:
    """The controller that takes the backups: backup_node, else the last controller."""
    return data["backup_node"] or names[-1]


@dataclass(frozen=True)
class CopyTarget:
    kind: str  # "controller" or "ssh"
    name: str  # the controller's name, or the SSH target as the site wrote it
    directory: str


def copy_target(names: list[str], data: dict) -> CopyTarget:
    """Where each backup is copied: backup_copy_to (a controller when it names one, else an
    SSH host), else the controller before backup_node in the inventory."""
    directory = data["backup_copy_dir"] or data["backup_dir"]
    to = data["backup_copy_to"]
    if to is None:
        me = node(names, data)
        before = names[names.index(me) - 1] if me in names else names[-1]
        return CopyTarget("controller", before, directory)
    return CopyTarget("controller" if to in names else "ssh", to, directory)


def script_values(site: Site) -> dict:
    """What the script is rendered with (one place: the template defaults nothing)."""
    d = site.data
    names = [c.name for c in site.controllers]
    me = node(names, d)
    target = copy_target(names, d)
    compress, decompress, suffix = COMPRESSORS[d["backup_compress"]]
    return {
        "node": me,
        "writer": site.writer,
        "directory": d["backup_dir"],
        "datadir": DATADIR,
        "compress": compress,
        "decompress": decompress,
        "suffix": suffix,
        "margin_percent": d["backup_space_margin_percent"],
        "cluster_size": len(names),
        # the peers' Galera-aware check (httpchk only): the script asks each whether it is Synced
        "peer_checks": [(c.name, c.address) for c in site.peers(me)] if d["mariadb_check_method"] == "httpchk" else [],
        "check_port": d["mariadb_check_port"],
        "serving_check": serving_check(),  # facts/galera.py's: the same rule as the deploy's
        "copy_host": site.controller(target.name).address if target.kind == "controller" else target.name,
        "copy_name": target.name,
        "copy_dir": target.directory,
        "ssh_options": SSH_OPTIONS,
        "script": SCRIPT,
        "full_calendar": d["backup_full_calendar"],
        "retention_days": d["backup_retention_days"],
        "incremental_calendar": d["backup_incremental_calendar"],
    }


def read_paths(site: Site, name: str) -> tuple[str, ...]:
    """The small files the deploy reads on controller `name` for the copy's SSH trust
    (operations/backup.py, read with the rest before the run: operations/before.py): on
    backup_node its public key and pinned host key, on the copy controller its authorized_keys
    and host key."""
    if not site.data["backup_enabled"]:
        return ()
    names = [c.name for c in site.controllers]
    me, target = node(names, site.data), copy_target(names, site.data)
    return ((f"{BACKUP_SSH_KEY}.pub", BACKUP_KNOWN_HOSTS) if name == me else ()) + \
        ((AUTHORIZED_KEYS, HOST_KEY) if target.kind == "controller" and name == target.name else ())
