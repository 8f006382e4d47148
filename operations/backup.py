"""MariaDB backups (backup_enabled; docs/operations.md "Backups"): on backup_node, the backup
script, its service and timers, and the SSH key its copies go out with.

The key is generated on backup_node and never leaves it: its public half is authorized on the
copy controller (`restrict`, from backup_node's address only), and the copy controller's host
key is pinned in backup_node's own known-hosts file. A copy to a host outside the inventory
(backup_copy_to an SSH host) needs the key authorized there by its owner: the blast radius says
so, with the key. A controller that stopped being backup_node loses the files and its timers
(its backups stay where they are). Whether a backup may be taken, and which, is
operations/backup_plan.py's (checked again by the script on the host).
"""

from __future__ import annotations

import shlex

from pyinfra import host, inventory, logger
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation
from pyinfra.facts.files import FileContents

from config import backup
from config.backup import AUTHORIZED_KEYS, HOST_KEY
from config.files import BACKUP_PATHS
from config.paths import BACKUP_KEY_COMMENT, BACKUP_KNOWN_HOSTS, BACKUP_SSH_KEY, BACKUP_TIMERS
from facts.backup import BackupManifests, BackupSpace, manifests_of
from facts.backup_manifest import Manifest, load
from facts.galera import GaleraNode
from operations.backup_plan import Take, take
from operations.before import fact_of, facts_of_all_controllers, file_state, unit_state
from operations.common import announce, decided_once, files_of, shell, site, unit_log
from operations.maintenance_marker import in_maintenance
from operations.steps import daemon_reload, install_files, mark_reload, packages


def read_file(name: str, path: str) -> str | None:
    """A small file of controller `name` as the run read it before any change (None: missing)."""
    lines = fact_of(inventory.get_host(name), FileContents, path=path)
    return None if lines is None else "\n".join(lines)


def peer_file(name: str, path: str, left: str) -> tuple[bool, str | None]:
    """A small file of the peer controller `name` (read_file), read for this host's plan:
    (True, its content or None when missing), or (False, None) when `name` could not be reached,
    with a warning naming it and what here is `left` as it is: a peer down (a power cut, seen in
    the soak) must not stop the deploy of the others; the deploy after it is back checks it."""
    try:
        return True, read_file(name, path)
    except ConnectionError:
        logger.warning(f"[{host.name}] backup: {name} could not be reached: {left} is left as it is; "
                       "the deploy after it is back checks it")
        return False, None


def authorized_line(public_key: str, source: str) -> str:
    """The copy host's authorized_keys line of backup_node's key: no shell, no forwarding, from
    its address only (scp runs its own command: `restrict` leaves that)."""
    return f'restrict,from="{source}" {public_key.strip()}'


def _authorize_now(node: str, source: str):
    """While executing, on the copy controller, when the key was generated in this run: read the
    key on `node` and authorize it here (the plan could not know it)."""
    def authorize(*_args, **_kwargs):
        ok, out = inventory.get_host(node).run_shell_command(f"cat {BACKUP_SSH_KEY}.pub", print_output=False)
        pub = "\n".join(out.stdout_lines).strip() if ok else ""
        if not pub:
            logger.error(f"[{host.name}] could not read the backup key {BACKUP_SSH_KEY}.pub on {node}")
            return False
        ok, _ = host.run_shell_command(_authorize_command(authorized_line(pub, source)), print_output=False)
        return ok
    return authorize


def _authorize_command(line: str) -> str:
    """authorized_keys with the backup key's line (any older one of it replaced)."""
    return (f"install -d -m 700 /root/.ssh && touch {AUTHORIZED_KEYS} && "
            f"{{ grep -v ' {BACKUP_KEY_COMMENT}@' {AUTHORIZED_KEYS} || true; echo {shlex.quote(line)}; }} "
            f"> {AUTHORIZED_KEYS}.new && chmod 600 {AUTHORIZED_KEYS}.new && mv {AUTHORIZED_KEYS}.new {AUTHORIZED_KEYS}")


@operation()
def authorize_key(node: str, source: str, run: bool):
    """
    The backup key of `node` authorized on this controller (the copy's), when it is not yet.

    + node: backup_node
    + source: its address (the `from=` of the line)
    + run: False on every other controller
    """
    if not run:
        return
    reached, pub = peer_file(node, f"{BACKUP_SSH_KEY}.pub", "its key's authorization here")
    if not reached:  # the backup node is down: what this controller authorized stays
        return
    if pub is None:  # generated in this run: read when executing
        yield FunctionCommand(_authorize_now(node, source), (), {})
        return
    line = authorized_line(pub, source)
    if line not in (read_file(host.name, AUTHORIZED_KEYS) or "").splitlines():
        yield StringCommand(_authorize_command(line))


@deploy("backup")
def configure():
    """The backup node's script, service and timers, its key authorized on the copy controller
    and that controller's host key pinned; nothing on a site without backups, and the files
    removed from a controller that is no longer the backup node."""
    s = site()
    d = s.data
    names = [c.name for c in s.controllers]
    me = backup.node(names, d) if d["backup_enabled"] else None
    target = backup.copy_target(names, d)
    mine = host.name == me
    to_controller = me is not None and target.kind == "controller"

    # mariadb-backup and gzip come with the database; zstd only when the site compresses with it
    packages(name="backup: its compressor", names=["zstd"] if mine and d["backup_compress"] == "zstd" else [])
    shell("backup: its SSH key", [
        f"install -d -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N '' -C {BACKUP_KEY_COMMENT}@{me} -f {BACKUP_SSH_KEY}"],
        when=mine and read_file(me, f"{BACKUP_SSH_KEY}.pub") is None)
    authorize_key(name=f"backup: {me}'s key authorized for its copies", node=me, source=s.controller(me).address if me else "",
                  run=to_controller and host.name == target.name)
    pinned = ""
    if mine and to_controller:
        _, key = peer_file(target.name, HOST_KEY, "its pinned host key")  # down: the host key pinned before stays
        pinned = f"{s.controller(target.name).address} {' '.join((key or '').split()[:2])}\n" if key else ""
    elif mine:
        logger.info(f"[{me}] backups are copied to {target.name} over SSH: authorize {me}'s key "
                    f"({BACKUP_SSH_KEY}.pub) there; its host key is recorded at the first copy")
    shell(f"backup: {target.name}'s host key pinned", [
        f"install -d -m 755 {BACKUP_KNOWN_HOSTS.rsplit('/', 1)[0]} && printf %s {shlex.quote(pinned)} > {BACKUP_KNOWN_HOSTS}"],
        when=bool(pinned) and read_file(me, BACKUP_KNOWN_HOSTS) != pinned.rstrip("\n"))

    scripts = (backup.SCRIPT, *backup.TOOLS)
    reload = mark_reload("backup", tuple(p for p in BACKUP_PATHS if p not in scripts))
    install_files("backup", validate={p: ("bash -n {path}", "bash -n") for p in scripts}, paths=BACKUP_PATHS)
    planned = [f.path for f in files_of("backup")]
    timers = [t for t in BACKUP_TIMERS if any(p.endswith(t) for p in planned)]
    daemon_reload("backup: reload systemd units", "backup", reload)
    off = [t for t in BACKUP_TIMERS if t not in timers and unit_state(t).get("enabled") == "enabled"]
    on = [t for t in timers if unit_state(t).get("enabled") != "enabled" or unit_state(t).get("active") != "active"]
    shell("backup: timers", [*(f"systemctl enable --now {t}" for t in on), *(f"systemctl disable --now {t}" for t in off)],
          when=bool(on or off))
    stale = [p for p in BACKUP_PATHS if p not in planned and file_state(p) is not None]
    shell("backup: not the backup node: its files removed (its backups kept)", [f"rm -f {' '.join(stale)}", "systemctl daemon-reload"],
          when=bool(stale))
    announce(bool(on or off or stale), "backup schedule changes")


# --- a backup now (backup.py, `make backup`) -----------------------------------------------------


class Refusal(Exception):
    """No backup is taken: nothing was changed; the message names the node and the fix."""


def read_on(name: str, cls, **kwargs) -> dict:
    """A fact of controller `name` as this run read it before any change; a fact that could not
    be read is {"error": why} (the decision refuses, naming the controller)."""
    h = inventory.get_host(name, None)
    try:
        got = fact_of(h, cls, **kwargs) if h is not None else None
    except Exception as exc:  # noqa: BLE001 - unreachable or failed: unknown, said
        return {"error": f"{type(exc).__name__}: {exc}"}
    return got if got else {"error": "no answer"}


def _read(name: str, cls, **kwargs) -> dict:
    got = read_on(name, cls, **kwargs)
    if got.get("error"):
        raise Refusal(f"could not read {cls.__name__} of {name} ({got['error']}): check {name} and run again")
    return got


@decided_once("backup: ", Refusal)
def decision() -> tuple[str, Take]:
    """The backup asked for (--data kind=full|incremental, default full) and whether it may be
    taken now (backup_plan.take), from every controller's Galera state, the controllers in
    maintenance and the backup node's manifests and free space; refused with why otherwise."""
    s = site()
    d = s.data
    names = [c.name for c in s.controllers]
    if not d["backup_enabled"]:
        raise Refusal("backup_enabled is False for this site: set it in the inventory, deploy, then take a backup")
    kind = str(host.data.get("kind") or "full")
    if kind not in ("full", "incremental"):
        raise Refusal(f"kind {kind!r}: say --data kind=full or --data kind=incremental")
    me = backup.node(names, d)
    listing = _read(me, BackupManifests, directory=d["backup_dir"], calendar=d["backup_full_calendar"],
                    suffix=backup.MANIFEST_SUFFIX)
    space = _read(me, BackupSpace, directory=d["backup_dir"], datadir=backup.DATADIR)
    plan = take(facts_of_all_controllers(GaleraNode), names, me, s.writer, in_maintenance(), manifests_of(listing), kind,
                space["free_bytes"], space["datadir_bytes"], d["backup_space_margin_percent"])
    if not plan.allowed:
        raise Refusal(f"no {kind} backup on {me}: " + "; ".join(plan.refusals))
    return me, plan


@deploy("Backup")
def run():
    """Take one backup now on the backup node, through its service (the timer's own path: the
    same script, the same journal), after the plan allowed it; the script checks again on the
    host. A failure prints the service's journal; a success, what was taken (its manifest)."""
    me, plan = decision()
    unit = f"openstack-ha-backup@{plan.kind}.service"
    if host.name == me:
        for note in plan.notes:
            host.log(note)
    shell(f"backup: {plan.kind} on {me}" + (f" (on {plan.parent})" if plan.parent else ""), [
        f"systemctl start {unit} || {{ {unit_log(unit, 40)}; exit 1; }}",
    ], when=host.name == me)
    said(name=f"backup: what {me} took", run=host.name == me)


def _say_newest(*_args, **_kwargs):
    """While executing, on the backup node: the newest backup's manifest, one line."""
    d = site().data
    ok, out = host.run_shell_command(f"cat {d['backup_dir']}/$(cat {d['backup_dir']}/chain){backup.MANIFEST_SUFFIX}",
                                     print_output=False)
    if not ok:
        return True
    m = load("\n".join(out.stdout_lines), "the newest backup")
    if isinstance(m, Manifest):
        proven = {True: f"verified, {len(m.tables)} tables summed", False: f"verification FAILED: {m.verify_note}",
                  None: "not verified (an incremental)"}[m.verified]
        host.log(f"backup {m.id}: {m.kind}{' on ' + m.parent if m.parent else ''}, "
                 f"{(m.artifact_bytes or 0) / 2**20:.1f} MiB, position {m.position}, {proven}")
    return True


@operation()
def said(run: bool):
    """
    Say what the backup node took (the newest manifest), after the backup ran.

    + run: on the backup node only
    """
    if run:
        yield FunctionCommand(_say_newest, (), {})
