"""Backups' site values resolved (docs/operations.md "Backups (in progress)"): which controller takes them,
where their copy goes, and the backup script rendered with them.

Pure: preflight (config/preflight.py) checks the same resolution before anything renders,
operations/backup_plan.py decides whether a backup may be taken and what retention deletes.
The script (files/templates/backup/openstack-ha-backup.sh.j2) is not installed by the deploy
yet: the timer, the service and the verify step are the lab-wiring still to come.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.paths import MAINTENANCE_FILE
from facts.galera import serving_check
from config.site import Controller, Site

DATADIR = "/var/lib/mysql"  # MariaDB's datadir on Debian: a backup is never kept inside it
SCRIPT = "/usr/local/sbin/openstack-ha-backup"  # where the lab-wiring will install the script
TEMPLATE = "backup/openstack-ha-backup.sh.j2"
# The restore tooling (issue 18 items 3, 5): {installed path: template}, rendered by render_tool().
PREPARE = "/usr/local/sbin/openstack-ha-backup-prepare"
VERIFY = "/usr/local/sbin/openstack-ha-backup-verify"
RESTORE = "/usr/local/sbin/openstack-ha-restore"
TOOLS = {
    PREPARE: "backup/openstack-ha-backup-prepare.j2",
    VERIFY: "backup/openstack-ha-backup-verify.j2",
    RESTORE: "backup/openstack-ha-restore.j2",
}
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
    }


def render_script(site: Site) -> str:
    """The backup script for the site's backup node (the lab-wiring installs it at SCRIPT)."""
    from config import files  # jinja and the templates: not needed by preflight, which imports this module

    return files.render_file(TEMPLATE, b=script_values(site), maintenance_file=MAINTENANCE_FILE,
                             manifest_suffix=MANIFEST_SUFFIX)


def render_tool(site: Site, path: str) -> str:
    """The restore tool installed at `path` (a key of TOOLS: the prepare, the verify step, the
    restore) for the site's backup node, rendered with the backup script's values."""
    from config import files

    return files.render_file(TOOLS[path], b=script_values(site), prepare=PREPARE, manifest_suffix=MANIFEST_SUFFIX)
