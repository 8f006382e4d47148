"""The restore rehearsal (issue 18 item 4; docs/operations.md "Backups"): a backup restored as
a Galera cluster of its own on the hosts the site names for it (backup_rehearsal_hosts, never
a controller) and compared, host by host, with its manifest's per-table sums.

    make restore-rehearsal [BACKUP=ID|latest] [FROM=node|copy] INVENTORY=...
    (HA_REHEARSAL_SITE=SITE pyinfra -y inventories/rehearsal.py rehearsal.py --data backup=ID)

Decided once (operations/rehearsal_plan.py plan(), from the source's manifests and artifacts'
sha256): refused, nothing changed, for a rehearsal host that is a controller (or has its
address, or the VIP's), one not in the run, a changed artifact, a broken chain, a backup
without galera-info or one failed by its verification. The controllers are only read: the
chain's manifests, artifacts and .sha256 files are downloaded from the source (the backup node,
or its copy with from=copy) into a 0700 directory on this machine, removed at the end.

On the rehearsal hosts, in order: the galera component's packages; mariadb stopped and its
socket units disabled; the galera component's files rendered for a site whose controllers are
the rehearsal hosts (rehearsal_site(): its own cluster name, no peer TLS); the backup tools
(openstack-ha-backup-prepare, openstack-ha-restore) rendered the same way. On the first host the
chain is uploaded into backup_dir and restored by openstack-ha-restore (every sha256 and the
chain checked again, incrementals applied in order, grastate.dat from galera-info), bootstrapped
with the Galera plan's own command, the state transfer account given the current password (the
backup's may be older); the others join by SST one at a time, each until Synced. Then every
host's table sums (the verify step's SQL) are compared with the manifest's
(facts/backup_manifest.py compare(), rehearsal_lines()): the table of differences, and a last
line with the tables and rows compared; a difference fails the run. With --data report=PATH the
lines are also written there (make prints them last).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shlex
import shutil
import tempfile

from pyinfra import host, inventory, logger, state
from pyinfra.api import FileDownloadCommand, FileUploadCommand, FunctionCommand, StringCommand, deploy, operation

from config import backup
from config.accounts import SST_ACCOUNT, native_hash
from config.files import TEMPLATES, ManagedFile, managed_files, render_backup_tool
from config.packages import PACKAGES
from config.rehearsal import KEY
from config.site import Controller, Site
from facts.backup import BackupArtifactSums, BackupManifests, manifests_of
from facts.backup_manifest import Manifest, compare, rehearsal_lines, with_sums
from facts.galera import SOCKET_UNITS
from operations.backup import read_on
from operations.common import decided_once, once, one_at_a_time, secrets, site
from operations.galera import join_commands, synced_wait
from operations.galera_plan import bootstrap_command
from operations.rehearsal_plan import Rehearsal, plan, source_of
from operations.runstate import run_dict
from operations.steps import consume, secret_input

# The verify step's table-sum script, the file its template includes (one place of that SQL).
SUMS_SCRIPT = (TEMPLATES / "backup" / "_table_sums.py").read_text()


class RehearsalRefused(Exception):
    """The rehearsal may not run: the plan's refusals, one per line."""


def rehearsal_site(s: Site) -> Site:
    """The site as the rehearsal hosts see it: they are its controllers (so that the galera
    component's templates render their own addresses and peers), under a cluster name of their
    own (a rehearsal host can never join the production cluster, nor the reverse), without peer
    TLS (the hosts hold no node certificate), the backup tools reading backup_dir there."""
    hosts = s[KEY]
    data = {**s.data, "galera_cluster_name": f"{s['galera_cluster_name']}-rehearsal"[:60], "galera_tls": False,
            "backup_node": None, "backup_copy_to": None, "backup_copy_dir": None}
    return Site([Controller(n, a, 0) for n, a in hosts.items()], data, s.services)


def requested() -> tuple[str | None, str]:
    """(the backup asked for, None for the latest; where it is read: node or copy) from --data."""
    wanted = str(host.data.get("backup") or "latest")
    return (None if wanted == "latest" else wanted), str(host.data.get("from") or "node")


@decided_once("restore-rehearsal: ", RehearsalRefused)
def decision() -> Rehearsal:
    """What this run rehearses (rehearsal_plan.plan), shared by every host; a refusal ends the
    run before any change."""
    s = site()
    names = [c.name for c in s.controllers]
    if not s["backup_enabled"]:
        raise RehearsalRefused("backup_enabled is False for this site: there are no backups to rehearse")
    target, source = requested()
    copy = backup.copy_target(names, s.data)
    src, directory, why = source_of(source, backup.node(names, s.data), copy.kind, copy.name, s["backup_dir"],
                                    copy.directory)
    if why:
        raise RehearsalRefused(why)
    found = read_on(src, BackupManifests, directory=directory, calendar=s["backup_full_calendar"],
                    suffix=backup.MANIFEST_SUFFIX)
    if found.get("error"):
        raise RehearsalRefused(f"could not read the backups in {directory} on {src}: {found['error']}")
    manifests = manifests_of(found)
    run_dict("rehearsal manifests").update({m.id: m for m in manifests})
    first = plan(manifests, target, {}, s[KEY], set(s[KEY]), [], [], src, directory)
    artifacts = tuple(dict.fromkeys(f for f in first.files if not f.endswith((backup.MANIFEST_SUFFIX, ".sha256"))))
    sums = read_on(src, BackupArtifactSums, directory=directory, names=artifacts) if artifacts else {"sums": {}}
    if sums.get("error"):
        raise RehearsalRefused(f"could not read the sha256 of {', '.join(artifacts)} on {src}: {sums['error']}")
    by_id = {m.id: m for m in manifests}
    sha256s = {i: sums["sums"].get(by_id[i].artifact) for i in first.chain if i in by_id}
    in_run = {h.name for h in inventory.get_active_hosts()}
    r = plan(manifests, target, sha256s, s[KEY], in_run, [(c.name, c.address) for c in s.controllers],
             [s["vip"], s.data.get("external_vip")], src, directory, tuple(found.get("broken") or ()))
    if not r.allowed:
        raise RehearsalRefused("\n".join([*r.refusals, f"restore-rehearsal: {len(r.refusals)} refusal(s); nothing was changed"]))
    return r


@once
def staging() -> str:
    """This run's directory on this machine for the chain read from the source (made 0700 when
    the run executes, by _make_staging: a --dry run leaves nothing behind)."""
    return os.path.join(tempfile.gettempdir(), f"restore-rehearsal-{os.getpid()}")


def _make_staging(*_args, **_kwargs) -> bool:
    """While executing: staging() made afresh, 0700, and removed when this process ends (also
    after a failed run)."""
    path = staging()
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)
    atexit.register(shutil.rmtree, path, True)
    return True


def chosen_manifest() -> Manifest:
    """The manifest of the backup rehearsed, as the decision read it."""
    return run_dict("rehearsal manifests")[decision().backup]


def failed_earlier(r: Rehearsal) -> bool:
    """While executing: whether the source or a rehearsal host failed earlier in this run
    (said); every later step then does nothing (a joiner would wait 10 min for a cluster that
    was never bootstrapped). A failed host runs nothing more anyway (pyinfra)."""
    if not state.is_executing:
        return False
    names = {r.source, r.bootstrap, *r.joiners}
    failed = sorted(h.name for h in state.failed_hosts if h.name in names)
    if failed:
        host.log(f"not done: {', '.join(failed)} failed earlier in this rehearsal", logger.error)
    return bool(failed)


@operation()
def step(commands: list, run: bool = True):
    """
    One step of the rehearsal on this host: its commands, unless the source or a rehearsal
    host failed earlier in this run (checked when it executes).

    + commands: the step's; run: False makes it a no-op (every host calls every step)
    """
    if not run or failed_earlier(decision()):
        return
    yield from commands


@operation()
def fetch(run: bool):
    """
    The chain's files downloaded from the source controller (read only) into staging().

    + run: on the source only
    """
    if not run:
        return
    r = decision()
    yield FunctionCommand(_make_staging, (), {})
    for f in r.files:
        yield FileDownloadCommand(f"{r.directory}/{f}", os.path.join(staging(), f))


@operation()
def upload(run: bool):
    """
    The chain's files uploaded from staging() into backup_dir on the bootstrap host, then the
    staging directory removed from this machine.

    + run: on the bootstrap host only
    """
    r = decision()
    if not run or failed_earlier(r):
        return
    yield StringCommand(f"install -d -m 700 {shlex.quote(r.directory)}")
    for f in r.files:
        yield FileUploadCommand(os.path.join(staging(), f), f"{r.directory}/{f}")
    yield FunctionCommand(lambda *_a, **_k: shutil.rmtree(staging(), ignore_errors=True) or True, (), {})


def rendered(name: str, component: str) -> list[ManagedFile]:
    """The files rehearsal host `name` gets of `component`: the apt pins and the galera
    component's files (config/files.py, rendered for rehearsal_site()), or "tools": the backup's
    prepare and restore tools rendered the same way."""
    rs = rehearsal_site(site())
    if component == "tools":
        return [ManagedFile("backup", p, render_backup_tool(rs, p), "0755", "root", "root", False)
                for p in (backup.PREPARE, backup.RESTORE)]
    return managed_files(rs, name, secrets(), component)


@operation()
def put_files(component: str, run: bool):
    """
    A component's files rendered for this rehearsal host (rendered()), written as they are,
    owner and mode set, each through a 0600 upload (a secret's content never on a command line,
    in an argument or in a log).

    + component: "apt", "galera" or "tools"; run: on the rehearsal hosts only
    """
    if not run or failed_earlier(decision()):
        return
    for f in rendered(host.name, component):
        d = shlex.quote(os.path.dirname(f.path))
        p = shlex.quote(f.path)
        yield StringCommand(f"install -d -m 755 {d} && install -m 600 /dev/null {p}.new")
        yield FileUploadCommand(io.StringIO(f.content), f"{f.path}.new")
        yield StringCommand(f"chown {f.user}:{f.group} {p}.new && chmod {f.mode} {p}.new && mv {p}.new {p}")


@operation()
def sst_account(run: bool):
    """
    The state transfer account's password made the current one on the restored node (the
    backup's may be older: the joiners' SST logs in with the current one). Only mysql.* changes,
    which the table sums leave out. The hash reaches mysql from a 0600 file.

    + run: on the bootstrap host only
    """
    if not run or site()["galera_sst_method"] != "mariabackup":
        return
    q = lambda t: "'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'"  # noqa: E731
    want = q(native_hash(secrets()["mariadb_sst_password"]))
    sql = (f"CREATE USER IF NOT EXISTS {q(SST_ACCOUNT)}@'localhost' IDENTIFIED BY PASSWORD {want};\n"
           f"ALTER USER {q(SST_ACCOUNT)}@'localhost' IDENTIFIED BY PASSWORD {want};\n"
           f"GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO {q(SST_ACCOUNT)}@'localhost';\n")
    upload_, path = secret_input("rehearsal_sst.sql", sql)
    yield from upload_
    yield consume(f"( timeout 30 mysql >/dev/null 2>&1 || {{ echo '{host.name}: setting the state transfer "
                  f"account failed' >&2; exit 1; }} )", path)


def _read_sums(script: str):
    """While executing, on a rehearsal host: its table sums, kept for compared()."""
    def read(*_args, **_kwargs):
        ok, out = host.run_shell_command(f"python3 -c {shlex.quote(script)}", print_output=False)
        text = "\n".join(out.stdout_lines) if ok else ""
        try:
            run_dict("rehearsal sums")[host.name] = json.loads(text)
        except ValueError:
            logger.error(f"[{host.name}] could not sum the restored tables: {' '.join(out.stderr_lines)[-300:]}")
            return False
        return True
    return read


def _compared(r: Rehearsal, report: str | None):
    """While executing, on the bootstrap host: every restored host compared with the manifest
    (or, for an incremental, with the bootstrap host), the table and the verdict said; False
    (the run fails) on any difference or a host not summed."""
    def judge(*_args, **_kwargs):
        sums = run_dict("rehearsal sums")
        hosts = [r.bootstrap, *r.joiners]
        m = chosen_manifest()
        if r.reference != "manifest" and r.reference in sums:
            m = with_sums(m, sums[r.reference])
        comparisons = {h: compare(m, sums[h]) for h in hosts if h in sums}
        lines = rehearsal_lines(r.backup, comparisons, [h for h in hosts if h not in sums], r.reference)
        ok = len(comparisons) == len(hosts) and all(c.ok for c in comparisons.values())
        for line in lines:
            (logger.warning if ok else logger.error)(line)
        if report:
            os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
            with open(report, "w") as f:
                f.write("\n".join(lines) + "\n")
        return ok
    return judge


@operation()
def summed(run: bool):
    """
    The table sums of a restored rehearsal host read (the verify step's SQL), kept for judged().

    + run: on every rehearsal host
    """
    if run:
        yield FunctionCommand(_read_sums(SUMS_SCRIPT), (), {})


@operation()
def judged(run: bool, report: str | None):
    """
    The comparison and its verdict (see _compared), once every host was summed.

    + run: on the bootstrap host only; report: a file on this machine the lines are written to
    """
    if run:
        yield FunctionCommand(_compared(decision(), report), (), {})


@deploy("Restore rehearsal")
def run():
    """The rehearsal (see the module's doc)."""
    r = decision()
    s = site()
    rs = rehearsal_site(s)
    me = host.name
    mine = me in s[KEY]
    first = me == r.bootstrap
    uuid, _, seqno = (r.position or "").rpartition(":")
    if first:
        host.log(f"restore-rehearsal of {r.backup} (chain {' + '.join(r.chain)}, position {r.position}) from "
                 f"{r.source}:{r.directory} onto {', '.join([r.bootstrap, *r.joiners])}")
        for note in r.notes:
            host.log(note)

    fetch(name=f"rehearsal: {r.backup} read from {r.source} (only read)", run=me == r.source)
    # the galera component's packages (zstd when the backups are compressed with it), held at the
    # site's package_versions by its apt pins (the apt component's file) when it pins any
    pkgs = " ".join([*PACKAGES["galera"], *(["zstd"] if s["backup_compress"] == "zstd" else [])])
    put_files(name="rehearsal: the site's apt pins", component="apt", run=mine)
    step(name="rehearsal: MariaDB and Galera installed", run=mine, commands=[
        f"missing=$(for p in {pkgs}; do dpkg-query -W -f='${{Status}}\\n' $p 2>/dev/null | grep -q 'install ok installed' "
        "|| echo $p; done); [ -z \"$missing\" ] || { export DEBIAN_FRONTEND=noninteractive; "
        "timeout 300 apt-get update -q && timeout 600 apt-get install -y -q --no-install-recommends "
        "-o Dpkg::Options::=--force-confold $missing; }"])
    step(name="rehearsal: mariadb stopped, its socket units disabled", run=mine, commands=[
        f"systemctl stop mariadb; systemctl disable -q {' '.join(SOCKET_UNITS)} 2>/dev/null; "
        "! pgrep -x mariadbd >/dev/null"])
    put_files(name="rehearsal: the galera component's files, rendered for the rehearsal cluster", component="galera",
              run=mine)
    put_files(name="rehearsal: the backup's restore tools", component="tools", run=mine)
    upload(name=f"rehearsal: {r.backup} copied to {r.bootstrap}", run=first)
    step(name=f"rehearsal: {r.backup} prepared and restored on {r.bootstrap} (openstack-ha-restore)", run=first,
         commands=[f"{backup.RESTORE} {shlex.quote(r.backup)}"])
    peers = list(rs.controller(n).address for n in r.joiners)
    step(name=f"rehearsal: bootstrap {r.bootstrap} from the restored data", run=first,
         commands=[bootstrap_command(r.bootstrap, peers, (uuid, seqno)), synced_wait()])
    sst_account(name="rehearsal: the state transfer account", run=first)
    for name, turn_mine in one_at_a_time(list(r.joiners)):
        step(name=f"rehearsal: {name} joins by SST, waiting for Synced", run=turn_mine,
             commands=[f"rm -f {backup.DATADIR}/grastate.dat {backup.DATADIR}/gvwstate.dat",
                       *join_commands(name, repair=False)])
    summed(name="rehearsal: the restored tables summed", run=mine)
    judged(name="rehearsal: compared with the manifest", run=first, report=host.data.get("report"))
    if first:
        host.log(f"the rehearsal hosts keep the restored cluster and {r.directory}: remove them, or run it again "
                 "(it restores afresh)", logger.info)
