"""The state before the run, read once: one round trip per controller (facts.bundle), shared
by every decision. A cluster decision reads every controller of the inventory, also those a
--limit leaves out; an unknown state is None, never a default that reads as a state."""

from __future__ import annotations

import io
import json
import os
import sys

import gevent
import gevent.lock

from pyinfra import host, inventory, logger, state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents, Sha1File
from pyinfra.facts.server import Hostname

from config.defaults import DIST_PORT_OFFSET, GALERA_PORT
from config import amqp_tls, backup, peer_tls
from config.files import APT_PINS, BACKUP_PATHS, ERLANG_COOKIE, MAINTENANCE_FILE, RABBITMQ_MONITOR_CURLRC, managed_paths
from facts.backup import BackupManifests
from facts.bundle import Bundle, part
from facts.firewall import FirewallState
from facts.galera import GaleraNode, MysqlAccounts, without_recovery
from facts.host import UNITS, FileStates, Maintenance, PeerReach, ServiceStates
from facts.haproxy import HaproxyCertificate, HaproxyInfo, HaproxyServers
from facts.keepalived import KeepalivedState, VipHolder
from facts.memcached import MemcachedStats
from facts.monitoring import AlertmanagerCluster, PrometheusTargets
from facts.packages import PackageVersions
from facts.rabbitmq import AmqpTls, RabbitmqCluster, RabbitmqDefinitions, RabbitmqFeatureFlags, RabbitmqMembers, RabbitmqTls
from config.accounts import expected_hashes, expected_passwords
from config.site import Site
from operations.common import Refused, controllers_in_run, files_for, secret_value, site
from operations.runstate import run_dict

# Seconds each part of the pre-run bundle may take on the host. The slowest part by design is
# GaleraNode(recover=True) on a node whose mariadbd is down after a crash: galera_recovery
# (mysqld --wsrep-recover, an InnoDB crash recovery) bounded at 120 s by the fact itself; the
# other parts bound their tools at 10-30 s. 180 s lets the fact's own bounds fire first on a
# loaded host (every part runs at once); a part still running then is hung, and its controller
# is unknown to the plan (as an unreachable one), never read as a state.
# HA_PRE_RUN_TIMEOUT (seconds, 30-3600) changes it for a run: a slower site, or a drill.
def _pre_run_timeout(default: int = 180) -> int:
    raw = os.environ.get("HA_PRE_RUN_TIMEOUT", str(default))
    if not raw.isdigit() or not 30 <= int(raw) <= 3600:
        raise Refused(f"HA_PRE_RUN_TIMEOUT={raw!r}: expected whole seconds from 30 to 3600 (default {default}); "
                      "no host was changed")
    return int(raw)


PRE_RUN_TIMEOUT = _pre_run_timeout()


def facts_of_all_controllers(cls, args_of=None, quiet: bool = False, **kwargs) -> dict:
    """One fact from every controller of the inventory, read in parallel: {host name: fact}.

    Also from controllers a --limit leaves out (reading changes nothing; a cluster decision
    needs the whole picture). A controller that cannot be reached, or whose fact failed, maps
    to None: its state is unknown, never a default that reads as a state. `args_of(name)`
    gives a controller's own fact arguments (else `kwargs` for all); `quiet` logs no warning
    (a reader for whom an unreadable fact is expected, e.g. a broker not installed yet).
    """
    names = [c.name for c in site().controllers]

    def warn(h, why):
        if not quiet:
            logger.warning(f"[{h.name}] could not read {cls.__name__}: {why}")

    def read(h):
        if h is None or h in state.failed_hosts:
            return None
        try:
            fact = fact_of(h, cls, **(args_of(h.name) if args_of else kwargs))
        except Exception as exc:  # ConnectError, a fact that failed: unknown
            warn(h, f"{type(exc).__name__}: {exc}")
            return None
        if fact is None or fact.get("error"):
            warn(h, "no answer" if fact is None else fact["error"])
            return None
        return fact

    jobs = {n: gevent.spawn(read, inventory.get_host(n, None)) for n in names}
    gevent.joinall(list(jobs.values()))
    return {name: job.get() for name, job in jobs.items()}


def known_in_run(states: dict, what: str) -> dict:
    """`states` (facts_of_all_controllers), when every controller this run changes was read.
    One whose fact failed or timed out stops the run before any change, as the host's own
    facts do (known()): a plan never acts on a controller it could not read (it would take a
    running member for a node to join). One unreachable, or left out by --limit, is not in
    the run: the plan goes on without it, as before."""
    unknown = sorted(n for n in controllers_in_run() if states.get(n) is None)
    if unknown:
        raise Refused(f"could not read {what} of {', '.join(unknown)} (see the warnings above); no host was changed. "
                      f"Check {', '.join(unknown)} (ssh, load, the service) and run again.")
    return states


# --- the state before the run: one round trip per controller ------------------------------


def prefetch(name: str) -> tuple:
    """Every fact a run's plan reads from controller `name` (facts.bundle parts), read in one
    round trip. The database accounts and RabbitMQ definitions are read where they are
    decided: the first controller (the definitions from its management API, rabbitmqctl's
    Erlang VM only when that fails: not everywhere).
    The health report's facts too: a run that changes nothing reports from them (no second
    round trip; operations/verify.py)."""
    s = site()
    first = name == s.controllers[0].name
    return tuple(dict.fromkeys((
        part(FileStates, paths=checked_paths(name)),
        part(ServiceStates, units=UNITS),
        part(DebPackages),
        part(Hostname),
        part(FileContents, path="/etc/hosts"),
        *(part(FileContents, path=p) for p in backup.read_paths(s, name)),
        part(GaleraNode),
        part(RabbitmqCluster, **cluster_fact_args(s)),
        part(Sha1File, path=ERLANG_COOKIE),
        part(RabbitmqTls),  # tls_switch() reads every controller's, every run
        part(VipHolder, interface=s["vip_interface"], vip=s["vip"]),
        reach_part(s),
        *((part(MysqlAccounts), part(RabbitmqDefinitions, **definitions_args(s, name))) if first else ()),
        *upgrade_parts(s),
        *before_run_health_parts(s, name).values(),
    )))


def upgrade_parts(site: Site) -> tuple:
    """The upgrade plan's facts (operations/upgrade.py), only when the site pins a package:
    a default deploy runs no command of theirs."""
    pins = tuple(sorted(site["package_versions"]))
    if not pins:
        return ()
    flags = (part(RabbitmqFeatureFlags),) if "rabbitmq-server" in pins else ()
    return (part(PackageVersions, names=pins), *flags)


def cluster_fact_args(s: Site) -> dict:
    """RabbitmqCluster's arguments, the same in the bundle and in the plan's reading: the AMQP
    ports whose listener shows a running broker (plain and TLS, whatever this run's setting: a
    broker started before a switch of rabbitmq_amqp_tls or rabbitmq_amqp_plain listens on the
    other), and the controllers a stuck broker probes on the Erlang distribution port."""
    return {"port": s["rabbitmq_port"], "tls_port": s[amqp_tls.PORT_KEY], "peers": tuple(c.address for c in s.controllers),
            "dist_port": s["rabbitmq_port"] + DIST_PORT_OFFSET}


def definitions_args(s: Site, name: str) -> dict:
    """RabbitmqDefinitions' arguments for controller `name`, the same in the bundle and in the
    plan's reading: the management administrator and the node's own management listener (the
    administrator's password travels with the expected values, on the bundle's stdin)."""
    return {"admin": s["rabbitmq_admin_user"], "address": s.controller(name).address,
            "port": s["rabbitmq_management_port"]}


def reach_args(s: Site) -> dict:
    """PeerReach's arguments, the same on every controller (its own address too: one part for
    all): every controller's address and Galera's group port (RabbitMQ's paused broker probes
    its peers in its own fact, RabbitmqCluster)."""
    return {"addresses": tuple(c.address for c in s.controllers), "ports": (GALERA_PORT,)}


def reach_part(s: Site) -> tuple:
    return part(PeerReach, **reach_args(s))


def reach_of_all() -> dict:
    """{controller: {address: {port: "open" | "refused" | "none"}} or None}: what each
    controller reaches on Galera's group port, asked from it before the run (a partition shows only there)."""
    return {n: (f or {}).get("reach") if f else None
            for n, f in facts_of_all_controllers(PeerReach, **reach_args(site())).items()}


def members_args(s: Site, name: str) -> dict:
    """RabbitmqMembers' arguments for controller `name`, the same in the report and in the
    plan's reading: its own management listener, as the monitoring account (a 0600 curl config)."""
    return {"address": s.controller(name).address, "port": s["rabbitmq_management_port"], "config": RABBITMQ_MONITOR_CURLRC}


def members_of_all() -> dict:
    """{controller: its RabbitmqMembers before the run (running views, partition records), or
    None}: as the pre-run bundle read it for the report, quietly (a broker not installed yet
    has no management API: that is no warning). Also of controllers a --limit leaves out."""
    s = site()
    return facts_of_all_controllers(RabbitmqMembers, args_of=lambda name: members_args(s, name), quiet=True)


def health_parts(site: Site, name: str) -> dict[str, tuple]:
    """The verification facts of controller `name`, by report key, as facts.bundle parts."""
    d = site.data
    me = site.controller(name)
    tls = {"haproxy_tls": part(HaproxyCertificate, path=d["haproxy_tls_pem_path"])} if d["haproxy_tls"] else {}
    backups = ({"backup": part(BackupManifests, directory=d["backup_dir"], calendar=d["backup_full_calendar"],
                               suffix=backup.MANIFEST_SUFFIX)}
               if d["backup_enabled"] and name == backup.node([c.name for c in site.controllers], d) else {})
    external = {"external_vip": part(VipHolder, interface=site.external_vip_interface, vip=d["external_vip"])}
    monitoring = ({"prometheus": part(PrometheusTargets, address=me.address, port=d["monitoring_prometheus_port"]),
                   "alertmanager": part(AlertmanagerCluster, address=me.address, port=d["monitoring_alertmanager_port"])}
                  if d["monitoring_enabled"] else {})
    return {
        "vip": part(VipHolder, interface=d["vip_interface"], vip=d["vip"]),
        **(external if d["external_vip"] else {}),
        "keepalived": part(KeepalivedState),
        "haproxy_info": part(HaproxyInfo, socket=d["haproxy_stats_socket"]),
        "haproxy_servers": part(HaproxyServers, socket=d["haproxy_stats_socket"]),
        "galera": part(GaleraNode, recover=False),
        # the management API as the monitoring account (its login in a 0600 file): no Erlang VM
        "rabbitmq": part(RabbitmqMembers, **members_args(site, name)),
        "memcached": part(MemcachedStats, address=me.address, port=d["memcached_port"]),
        "firewall": part(FirewallState),
        "maintenance": part(Maintenance, path=MAINTENANCE_FILE),
        # On or off (off: nothing may answer there); on, the certificate checked with the CA's copy.
        "amqp_tls": part(AmqpTls, address=me.address, port=d[amqp_tls.PORT_KEY],
                         ca=peer_tls.paths("rabbitmq")["ca"] if amqp_tls.on(d) else ""),
        **tls,
        **backups,
        **monitoring,
    }


def before_run_health_parts(site: Site, name: str) -> dict[str, tuple]:
    """health_parts() as the pre-run bundle carries them: Galera's is the plan's part
    (recover=True), one GaleraNode per controller and bundle, not two. What recover=True adds
    is dropped when the report reads it (read_before_run)."""
    return {**health_parts(site, name), "galera": part(GaleraNode)}


UNREACHABLE = "unreachable"


class TimedOut(str):
    """A part of the pre-run bundle that ran out of PRE_RUN_TIMEOUT: unknown, never re-read."""


class PartTimedOut(Exception):
    """A fact without our error contract (pyinfra's own) whose part ran out: unknown."""


def bundle_answers(parts: tuple, got: dict) -> dict:
    """{part: result} of a pre-run bundle's answer; a part cut by PRE_RUN_TIMEOUT (`timeout`'s
    status 124) is a TimedOut. A bundle cut short answers nothing (each fact read on its own)."""
    if got.get("error"):
        return {}
    status = got.get("status") or []
    return {p: TimedOut(f"no answer within {PRE_RUN_TIMEOUT} s (timed out on the host)")
            if i < len(status) and status[i] == "124" else result
            for i, (p, result) in enumerate(zip(parts, got["parts"]))}


def bundles() -> dict:
    """This run's pre-run bundles: {host name: {part: result or TimedOut} or UNREACHABLE}."""
    return run_dict("bundles")


def _bundle(h) -> dict | str:
    key, _bundles = h.name, bundles()
    lock = run_dict("bundle locks").setdefault(key, gevent.lock.BoundedSemaphore())
    with lock:
        if key not in _bundles:
            parts = prefetch(h.name)
            compared = expected_input() if any(p[0].endswith(COMPARED) for p in parts) else None
            try:
                got = h.get_fact(Bundle, parts=parts, limit=PRE_RUN_TIMEOUT, _timeout=PRE_RUN_TIMEOUT + 30,
                                 **({"with_input": True, "_stdin": HiddenInput(compared)} if compared else {}))
            except Exception as exc:  # the connection: every fact of this host is unknown
                logger.warning(f"[{h.name}] could not read its state: {type(exc).__name__}: {exc}")
                _bundles[key] = UNREACHABLE
            else:
                _bundles[key] = bundle_answers(parts, got)
    return _bundles[key]


# Facts that compare the accounts' passwords on the host: their expected values travel on the
# bundle's stdin (expected_input), never as an argument, a command line or an answer.
COMPARED = (":MysqlAccounts", ":RabbitmqDefinitions")


class HiddenInput(io.StringIO):
    """A command's stdin that pyinfra never shows: it prints a fact's arguments, _stdin too,
    with str() (-v: "Loaded fact ... (_stdin=...)"); the connectors read it with readlines()."""

    def __str__(self) -> str:
        return "(expected values, not shown)"

    __repr__ = __str__


def expected_input() -> str:
    """What MysqlAccounts and RabbitmqDefinitions compare on the host (facts.probe INPUT_ENV):
    the database accounts' expected hashes, the RabbitMQ accounts' passwords."""
    s = site()
    return json.dumps({"mysql": expected_hashes(s.data, secret_value), "rabbitmq": expected_passwords(s.data, secret_value)})


def has_error_contract(cls) -> bool:
    """Ours (facts/): its default() is a dict with an `error` key."""
    default = cls.default()
    return isinstance(default, dict) and "error" in default


def fact_of(h, cls, **kwargs):
    """Fact `cls` of host `h` before the run: from its bundle, else read on its own (a part the
    bundle did not carry, or whose command failed). A part that ran out of PRE_RUN_TIMEOUT is
    not read again: ours come back as their default with the cause in `error`, pyinfra's own
    raise PartTimedOut. Raises ConnectionError when the host is unreachable."""
    got = _bundle(h)
    if got == UNREACHABLE:
        raise ConnectionError(f"{h.name} could not be reached")
    result = got.get(part(cls, **kwargs))
    if isinstance(result, TimedOut):
        if has_error_contract(cls):
            return {**cls.default(), "error": str(result)}
        raise PartTimedOut(str(result))
    if result is None and part(cls, **kwargs)[0].endswith(COMPARED):
        result = compared_alone(h, cls, **kwargs)
    return result if result is not None else h.get_fact(cls, **kwargs)


def compared_alone(h, cls, **kwargs):
    """A fact of COMPARED read where its controller's bundle did not carry it (the Galera
    anchor or RabbitMQ seed is not the first controller): a bundle of that one part, with the
    expected values on its stdin (alone it would answer "no" for every account, and every
    run would set the passwords again). None when that part fails too."""
    one = (part(cls, **kwargs),)
    got = h.get_fact(Bundle, parts=one, limit=PRE_RUN_TIMEOUT, with_input=True, _stdin=HiddenInput(expected_input()),
                     _timeout=PRE_RUN_TIMEOUT + 30)
    answer = bundle_answers(one, got).get(one[0])
    return None if isinstance(answer, TimedOut) else answer


# --- the plan's facts ------------------------------------------------------------------

def planned_fact(cls, **kwargs):
    """A fact of this host, read once per run (with every other, see prefetch()): the state
    the plan was made from.

    pyinfra runs an operation's generator twice, to plan and again to execute, and each
    host.get_fact is an SSH round trip. Our operations decide once, from the state before
    the run, and execute that decision. (Verification reads live facts, never these.)
    """
    key, _planned = (host.name, cls, tuple(sorted(kwargs.items()))), run_dict("planned facts")
    if key not in _planned:
        try:
            _planned[key] = fact_of(host, cls, **kwargs)
        except PartTimedOut as exc:
            known({"error": str(exc)}, cls.__name__)
    return _planned[key]


def known(fact: dict, what: str) -> dict:
    """A fact this host's plan cannot do without: its error stops the run before any change."""
    if fact.get("error"):
        print(f"{host.name}: could not read {what}: {fact['error']}; no host was changed. "
              f"Check {host.name} (ssh, disk, load) and run again.", file=sys.stderr)
        raise Refused()  # each host's own line, printed above
    return fact


def checked_paths(name: str) -> tuple[str, ...]:
    """The files whose state a run reads on controller `name`: its managed files, the backup
    node's (removed from a controller that is no longer the backup node), and the apt pins file
    also when the site pins nothing (one an earlier run left is removed: operations/upgrade.py).
    Lines of the same round trip, no new command. Their paths only: the bundle goes out
    before the files are rendered (files_for), which this process does while the hosts answer."""
    known_paths = run_dict("checked paths")
    if name not in known_paths:
        known_paths[name] = tuple(dict.fromkeys((*managed_paths(site(), name), *BACKUP_PATHS, APT_PINS)))
    return known_paths[name]


def file_state(path: str) -> dict | None:
    """A file's owner, group, mode and SHA1 before the run (None: missing); `path` one of checked_paths."""
    return known(planned_fact(FileStates, paths=checked_paths(host.name)), "its managed files")["files"].get(path)


def unit_state(unit: str) -> dict:
    """The unit's state before the run: active, enabled, pending (facts.host.ServiceStates)."""
    return known(planned_fact(ServiceStates, units=UNITS), "its systemd units")["units"].get(unit, {})


def reload_left(component: str) -> bool:
    """Whether an earlier run wrote unit files of `component` and was cut before their
    `systemctl daemon-reload` (its marker, read with the units: facts.host.ServiceStates)."""
    return component in known(planned_fact(ServiceStates, units=UNITS), "its systemd units").get("reloads", ())


def read_before_run(h, site: Site) -> dict | None:
    """The report's facts of host `h` (health_parts(), in its order) as the pre-run bundle
    read them, when this run read one (a deploy; a verification alone reads none): {"parts":
    [...], "status": [...], "error": None}. Galera's is the plan's read, as the report's own
    (recover=False) reads it. None when a part is unknown or timed out: read live."""
    got = bundles().get(h.name)
    parts = list(before_run_health_parts(site, h.name).items())
    if not isinstance(got, dict) or any(got.get(p) is None or isinstance(got[p], TimedOut) for _, p in parts):
        return None
    answers = [without_recovery(got[p]) if key == "galera" else got[p] for key, p in parts]
    return {"parts": answers, "status": ["0"] * len(parts), "error": None}
