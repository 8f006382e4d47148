"""What every component shares: the site, its secrets, managed files, packages, bounded waits.

Secrets never travel as operation or fact arguments (pyinfra prints those): operations look
them up here by name, commands carry them as HiddenValue, and diffs are masked.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import shlex
import sys

import gevent
import gevent.lock

from pyinfra import host, inventory, logger, state
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents, Sha1File
from pyinfra.facts.server import Hostname
from pyinfra.operations import server

from config.files import ERLANG_COOKIE, ManagedFile, managed_files
from config.preflight import check, print_report
from config.secrets import load_secrets, mask
from config.site import Site, build_site, inventory_shape
from facts.bundle import Bundle, part
from facts.galera import GaleraNode, MysqlAccounts
from facts.host import PENDING_DIR, UNITS, FileStates, ServiceStates
from facts.keepalived import VipHolder
from facts.rabbitmq import RabbitmqCluster, RabbitmqDefinitions

APT_TIMEOUT = 600  # seconds for one apt-get install; apt has hung forever on lab nodes
WAIT_SECONDS = 300  # cluster joins, Synced, services answering


def once(fn):
    """Compute once per run, shared by every host's deploy (they load in parallel greenlets:
    a lock keeps the others from fetching the same facts again while the first computes)."""
    lock = gevent.lock.BoundedSemaphore()
    cached = []

    def wrapper():
        with lock:
            if not cached:
                cached.append(fn())
        return cached[0]

    wrapper.cache_clear = cached.clear
    wrapper.__doc__ = fn.__doc__
    return wrapper


def controllers_in_run() -> set[str]:
    """Controllers this run changes: in the --limit (if any) and connected."""
    names = {c.name for c in site().controllers}
    return {h.name for h in inventory.get_active_hosts() if h.name in names}


def facts_of_all_controllers(cls, **kwargs) -> dict:
    """One fact from every controller of the inventory, read in parallel: {host name: fact}.

    Also from controllers a --limit leaves out (reading changes nothing; a cluster decision
    needs the whole picture). A controller that cannot be reached, or whose fact failed, maps
    to None: its state is unknown, never a default that reads as a state.
    """
    names = [c.name for c in site().controllers]

    def read(h):
        if h is None or h in state.failed_hosts:
            return None
        try:
            fact = fact_of(h, cls, **kwargs)
        except Exception as exc:  # ConnectError, a fact that failed: unknown
            logger.warning(f"[{h.name}] could not read {cls.__name__}: {type(exc).__name__}: {exc}")
            return None
        if fact.get("error"):
            logger.warning(f"[{h.name}] could not read {cls.__name__}: {fact['error']}")
            return None
        return fact

    jobs = {n: gevent.spawn(read, inventory.get_host(n, None)) for n in names}
    gevent.joinall(list(jobs.values()))
    return {name: job.get() for name, job in jobs.items()}


# --- the state before the run: one round trip per controller ------------------------------


def prefetch(name: str) -> tuple:
    """Every fact a run's plan reads from controller `name` (facts.bundle parts), read in one
    round trip. The database accounts and RabbitMQ definitions are read where they are
    decided: the first controller (an export_definitions starts an Erlang VM: not everywhere)."""
    s = site()
    first = name == s.controllers[0].name
    return (
        part(FileStates, paths=tuple(f.path for f in files_for(name))),
        part(ServiceStates, units=UNITS),
        part(DebPackages),
        part(Hostname),
        part(FileContents, path="/etc/hosts"),
        part(GaleraNode),
        part(RabbitmqCluster, port=s["rabbitmq_port"]),
        part(Sha1File, path=ERLANG_COOKIE),
        part(VipHolder, interface=s["vip_interface"], vip=s["vip"]),
        *((part(MysqlAccounts), part(RabbitmqDefinitions)) if first else ()),
    )


_bundles: dict = {}  # (id(state), host name) -> {part: result} or UNREACHABLE
_bundle_locks: dict = {}
UNREACHABLE = "unreachable"


def _bundle(h) -> dict | str:
    key = (id(state), h.name)
    lock = _bundle_locks.setdefault(key, gevent.lock.BoundedSemaphore())
    with lock:
        if key not in _bundles:
            parts = prefetch(h.name)
            try:
                got = h.get_fact(Bundle, parts=parts)
            except Exception as exc:  # the connection: every fact of this host is unknown
                logger.warning(f"[{h.name}] could not read its state: {type(exc).__name__}: {exc}")
                _bundles[key] = UNREACHABLE
            else:
                _bundles[key] = {} if got.get("error") else dict(zip(parts, got["parts"]))
    return _bundles[key]


def fact_of(h, cls, **kwargs):
    """Fact `cls` of host `h` before the run: from its bundle, else read on its own (a part the
    bundle did not carry, or that came back unknown). Raises when the host is unreachable."""
    got = _bundle(h)
    if got == UNREACHABLE:
        raise ConnectionError(f"{h.name} could not be reached")
    result = got.get(part(cls, **kwargs))
    return result if result is not None else h.get_fact(cls, **kwargs)


@once
def _site_and_secrets() -> tuple[Site, dict]:
    hosts, group_data = inventory_shape(inventory)
    secrets = load_secrets(group_data.get("secrets_file"))
    report = check(hosts, group_data, secrets)
    print_report(report)
    if report.errors:
        print(f"preflight: {len(report.errors)} error(s); no host was changed", file=sys.stderr)
        # SystemExit ends pyinfra cleanly, before any operation runs.
        raise SystemExit(1)
    return build_site(hosts, group_data), secrets


def site() -> Site:
    """The site model of the current inventory; the first call runs preflight."""
    return _site_and_secrets()[0]


def secret_value(name: str) -> str:
    return _site_and_secrets()[1][name]


def masked(text: str) -> str:
    return mask(text, _site_and_secrets()[1])


def files_of(component: str) -> list[ManagedFile]:
    return files_for(host.name, component)


def files_for(name: str, component: str | None = None) -> list[ManagedFile]:
    """A controller's files (of one component): this host's, or another's for a decision on
    one host that needs them."""
    return managed_files(site(), name, _site_and_secrets()[1], component)


def is_first() -> bool:
    return host.name == site().controllers[0].name


def one_at_a_time(names: list[str]):
    """Walk the controllers in order, yielding (name, mine): mine is True on this host's turn.

    Call the step's operation on every host at every turn, with no commands unless it is
    this host's turn (see shell()). pyinfra then orders turn i before turn i+1 (loop
    positions) and every host has the same operations in the same order, so a step runs node
    by node, in inventory order, and nothing of another host's sequence can overtake it:

        for name, mine in one_at_a_time(names):
            shell(f"restart {name}", [...], when=mine)
    """
    for name in host.loop(names):
        yield name, name == host.name


def shell(name: str, commands: list, when: bool):
    """server.shell that every host calls, doing nothing where `when` is false.

    Calling an operation on some hosts only shifts the order pyinfra gives it against the
    other hosts' operations; a no-op keeps every host's sequence aligned.
    """
    return server.shell(name=name, commands=commands if when else [])


@operation()
def turn(commands: list, run: bool = True):
    """
    One node's turn in a rolling step: its commands, unless a controller has failed earlier
    in this run (its restart, join or wait, or its connection), then nothing: no further node
    is touched, and the run ends non-zero on the failed one. Checked when the turn executes.

    + commands: the node's commands (a restart, a join, a wait)
    + run: False makes it a no-op (every host calls every turn; see one_at_a_time)
    """
    if not run:
        return
    if state.is_executing:
        names = {c.name for c in site().controllers}
        failed = sorted(h.name for h in state.failed_hosts if h.name in names)
        if failed:
            host.log(f"not touched: {', '.join(failed)} failed earlier in this run; fix it and re-run "
                     "(what was written and not yet applied is applied then)", logger.error)
            return
    yield from commands


_announced: dict = {}  # (id(state), host name) -> [(step, action or None)]
_finished: dict = {}  # id(state) -> hosts that have planned everything


def announce(ops, action: str) -> None:
    """Say, before anything runs (also with --dry), what a changed config will cause.

    `ops` is an operation, a list of them (announced if any will change) or a bool. Every host
    calls every announce, so step numbers line up across hosts; blast_radius() prints them all
    in the order they will run.
    """
    if isinstance(ops, bool):
        changes = ops
    else:
        ops = ops if isinstance(ops, (list, tuple)) else [ops]
        changes = any(op.will_change for op in ops)
    steps = _announced.setdefault((id(state), host.name), [])
    steps.append((len(steps), action if changes else None))
    if changes:
        host.log(f"will {action}", logger.warning)


def blast_radius() -> None:
    """Once every host has planned: the restarts and reloads of this run, host by host, in the
    order they will happen (rolling steps in inventory order)."""
    order = [c.name for c in site().controllers]
    finished = _finished.setdefault(id(state), set())
    finished.add(host.name)
    if len(finished) < len([h for h in inventory.get_active_hosts() if h.name in order]):
        return  # not the last host to finish planning
    planned = {name: steps for (sid, name), steps in _announced.items() if sid == id(state)}
    rows = sorted(
        (step, order.index(name), name, action)
        for name, steps in planned.items() if name in order
        for step, action in steps if action
    )
    if not rows:
        logger.info("--> Blast radius: no service restarts or reloads")
        return
    logger.info("--> Blast radius, in the order the steps run:")
    for i, (_, _, name, action) in enumerate(rows, 1):
        logger.info(f"    {i:>2}. {name}: {action}")


# --- the plan's facts ------------------------------------------------------------------

_planned: dict = {}


def planned_fact(cls, **kwargs):
    """A fact of this host, read once per run (with every other, see prefetch()): the state
    the plan was made from.

    pyinfra runs an operation's generator twice, to plan and again to execute, and each
    host.get_fact is an SSH round trip. Our operations decide once, from the state before
    the run, and execute that decision. (Verification reads live facts, never these.)
    """
    key = (id(state), host.name, cls, tuple(sorted(kwargs.items())))
    if key not in _planned:
        _planned[key] = fact_of(host, cls, **kwargs)
    return _planned[key]


def known(fact: dict, what: str) -> dict:
    """A fact this host's plan cannot do without: its error stops the run before any change."""
    if fact.get("error"):
        print(f"{host.name}: could not read {what}: {fact['error']}; no host was changed. "
              f"Check {host.name} (ssh, disk, load) and run again.", file=sys.stderr)
        raise SystemExit(1)
    return fact


def file_state(path: str) -> dict | None:
    paths = tuple(f.path for f in files_for(host.name))
    return known(planned_fact(FileStates, paths=paths), "its managed files")["files"].get(path)


def unit_state(unit: str) -> dict:
    """The unit's state before the run: active, enabled, pending (facts.host.ServiceStates)."""
    return known(planned_fact(ServiceStates, units=UNITS), "its systemd units")["units"].get(unit, {})


# --- managed files ---------------------------------------------------------------------


@operation()
def managed_file(path: str, component: str, validate: str | None = None):
    """
    Install one file of config.files (by target path): content from the site's templates,
    compared by SHA1, diffed with secrets masked, owner and mode enforced.

    + path: target path, as listed in config/files.py
    + component: the component that lists it
    + validate: a command with `{path}` run on the new file before it replaces the old one;
      if it fails the old file stays and the run stops with the command's message
    """
    wanted = next(f for f in files_of(component) if f.path == path)
    content = wanted.content
    remote = file_state(path)

    if remote is None or remote["sha1"] != hashlib.sha1(content.encode()).hexdigest():
        if state.config.DIFF and not state.is_executing:
            current = host.get_fact(FileContents, path=path) if remote else None
            before = [masked(line) + "\n" for line in (current or [])]
            after = masked(content).splitlines(keepends=True)
            host.log(f"{'Will modify' if remote else 'Will create'} {path}", logger.info)
            for line in difflib.unified_diff(before, after, f"{path} (on host)", f"{path} (new)"):
                logger.info("  %s", line.rstrip("\n"))
        target = f"{path}.pyinfra-new" if validate else path
        if wanted.secret:
            # An empty 0600 file first: the upload writes into it, never readable by others.
            yield StringCommand("install", "-m", "600", "/dev/null", QuoteString(target))
        yield FileUploadCommand(io.StringIO(content), target)
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(target))
        yield StringCommand("chmod", wanted.mode, QuoteString(target))
        if validate:
            check_cmd = validate.format(path=shlex.quote(target))
            failed = shlex.quote(f"{host.name}: {path} failed validation ({check_cmd}); the old file stays")
            yield StringCommand(f"{check_cmd} || {{ rc=$?; rm -f {shlex.quote(target)}; echo {failed} >&2; exit $rc; }}")
            yield StringCommand("mv", "-f", QuoteString(target), QuoteString(path))
        return

    if (remote["user"], remote["group"]) != (wanted.user, wanted.group):
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(path))
    if int(remote["mode"], 8) != int(wanted.mode, 8):
        yield StringCommand("chmod", wanted.mode, QuoteString(path))


def install_files(component: str, validate: dict[str, str] | None = None):
    """managed_file() for every file of a component; returns the operations' metas."""
    validate = validate or {}
    return [
        managed_file(
            name=f"{component}: {f.path}",
            path=f.path,
            component=component,
            validate=validate.get(f.path),
        )
        for f in files_of(component)
    ]


def any_will_change(ops) -> bool:
    return any(op.will_change for op in ops)


# --- packages --------------------------------------------------------------------------


@operation()
def packages(names: list[str]):
    """
    Install Debian packages that are missing; nothing at all (no apt-get update) when every
    one is installed, so a re-run hours later is still a no-op. apt is bounded and retried.

    + names: package names
    """
    installed = planned_fact(DebPackages) or {}
    missing = [n for n in names if n not in installed]
    if not missing:
        return
    pkgs = " ".join(missing)
    yield StringCommand(
        "export DEBIAN_FRONTEND=noninteractive; "
        "for try in 1 2 3; do "
        f"timeout {APT_TIMEOUT // 2} apt-get update -q -o Acquire::http::Timeout=30 && "
        f"timeout {APT_TIMEOUT} apt-get install -y -q --no-install-recommends "
        f"-o Dpkg::Options::=--force-confold {pkgs} && exit 0; "
        f"echo '{host.name}: apt-get install {pkgs}: try '$try' failed' >&2; sleep 5; done; "
        f"echo '{host.name}: could not install {pkgs} (3 tries, see apt output above)' >&2; exit 1"
    )


# --- services --------------------------------------------------------------------------

def pending(unit: str) -> bool:
    """A restart or reload of `unit` that an earlier run wrote the config for but did not do."""
    return bool(unit_state(unit).get("pending"))


def mark_pending(unit: str, component: str) -> bool:
    """Before a component's files: when one of their contents will change, a marker that
    `unit` must restart or reload, cleared once it did (service(), or the rolling step). A run
    interrupted in between (Ctrl-C, a lost connection, a failed peer) is applied by the next.
    Returns whether the unit must restart or reload: a file changes, or a marker was left."""
    remote = {f.path: file_state(f.path) for f in files_of(component)}
    changes = any(
        remote[f.path] is None or remote[f.path]["sha1"] != hashlib.sha1(f.content.encode()).hexdigest()
        for f in files_of(component)
    )
    shell(f"{component}: {unit} restart or reload pending", [f"mkdir -p {PENDING_DIR} && touch {PENDING_DIR}/{unit}"],
          when=changes)
    return changes or pending(unit)


def clear_pending(unit: str) -> str:
    return f"rm -f {PENDING_DIR}/{unit}"


@operation()
def service(unit: str, reloaded: bool = False, restarted: bool = False):
    """
    A unit enabled and running; reloaded or restarted when asked (a unit that was not
    running is just started), then its pending marker cleared.

    + unit: one of UNITS
    + reloaded: reload it (its config changed; connections survive)
    + restarted: restart it
    """
    st = unit_state(unit)
    if st.get("enabled") not in ("enabled", "static", "generated", "alias", "indirect"):
        yield f"systemctl enable {unit}"
    if st.get("active") != "active":
        # Not running before the run; a package install may have started it since, with its
        # default config: a changed config restarts it, otherwise it is started if need be.
        if restarted or reloaded:
            yield f"timeout 300 systemctl restart {unit} || {{ {unit_log(unit)}; exit 1; }}"
        else:
            yield f"systemctl is-active -q {unit} || timeout 300 systemctl start {unit} || {{ {unit_log(unit)}; exit 1; }}"
    elif restarted:
        yield f"timeout 300 systemctl restart {unit} || {{ {unit_log(unit)}; exit 1; }}"
    elif reloaded:
        yield f"systemctl reload {unit}"
    if restarted or reloaded or st.get("pending"):
        yield clear_pending(unit)


# --- bounded waits ---------------------------------------------------------------------


def wait_until(check: str, what: str, seconds: int = WAIT_SECONDS, on_fail: str = "") -> StringCommand:
    """A shell loop that polls `check` every second, bounded; its failure names host and step."""
    return StringCommand(
        f"for i in $(seq {seconds}); do ({check}) >/dev/null 2>&1 && exit 0; sleep 1; done; "
        f"echo '{host.name}: timed out after {seconds}s waiting for {what}' >&2; "
        f"{on_fail + '; ' if on_fail else ''}exit 1"
    )


def unit_log(unit: str, lines: int = 25) -> str:
    return f"journalctl -u {unit} -n {lines} --no-pager >&2"
