"""The state before the run, read once: one round trip per controller (facts.bundle), shared
by every decision. A cluster decision reads every controller of the inventory, also those a
--limit leaves out; an unknown state is None, never a default that reads as a state."""

from __future__ import annotations

import sys

import gevent
import gevent.lock

from pyinfra import host, inventory, logger, state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents, Sha1File
from pyinfra.facts.server import Hostname

from config.files import ERLANG_COOKIE, MAINTENANCE_FILE
from facts.bundle import Bundle, part
from facts.galera import GaleraNode, MysqlAccounts
from facts.host import UNITS, FileStates, Maintenance, ServiceStates
from facts.haproxy import HaproxyInfo, HaproxyServers
from facts.keepalived import KeepalivedState, VipHolder
from facts.memcached import MemcachedStats
from facts.rabbitmq import RabbitmqCluster, RabbitmqDefinitions, RabbitmqMembers
from config.site import Site
from operations.common import files_for, site


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
    decided: the first controller (an export_definitions starts an Erlang VM: not everywhere).
    The health report's facts too: a run that changes nothing reports from them (no second
    round trip; operations/verify.py)."""
    s = site()
    first = name == s.controllers[0].name
    return tuple(dict.fromkeys((
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
        *health_parts(s, name).values(),
    )))


def health_parts(site: Site, name: str) -> dict[str, tuple]:
    """The verification facts of controller `name`, by report key, as facts.bundle parts."""
    d = site.data
    me = site.controller(name)
    return {
        "vip": part(VipHolder, interface=d["vip_interface"], vip=d["vip"]),
        "keepalived": part(KeepalivedState),
        "haproxy_info": part(HaproxyInfo, socket=d["haproxy_stats_socket"]),
        "haproxy_servers": part(HaproxyServers, socket=d["haproxy_stats_socket"]),
        "galera": part(GaleraNode, recover=False),
        "rabbitmq": part(RabbitmqMembers),
        "memcached": part(MemcachedStats, address=me.address, port=d["memcached_port"]),
        "maintenance": part(Maintenance, path=MAINTENANCE_FILE),
    }


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


def read_before_run(h, parts: tuple) -> dict | None:
    """The pre-run bundle's answers to `parts` for host `h`, when this run read one (a deploy;
    a verification alone reads none): {"parts": [...], "status": [...], "error": None}."""
    got = _bundles.get((id(state), h.name))
    if not isinstance(got, dict) or any(got.get(p) is None for p in parts):
        return None  # not read, or a part unknown: read live
    return {"parts": [got[p] for p in parts], "status": ["0"] * len(parts), "error": None}
