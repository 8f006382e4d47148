"""The upgrade plan, pure: from every controller's installed and offered package versions, the
site's pins (package_versions) and the order, what changes where and in which turns, or the
refusals, all of them, before any change. Tested as a table (tests/unit/test_upgrade_plan.py).

- a pinned package whose installed version differs is an upgrade of that controller,
  "rolling": one controller at a time, the writer and the VIP holder last
  (galera_plan.restart_order, the order of every rolling step); a pinned package not yet
  installed is installed at its version ("install");
- refused, each with the supported path: a downgrade; a version apt on that controller does
  not offer; MariaDB over a major (a mixed cluster only between adjacent majors of
  MARIADB_MAJORS); RabbitMQ over a minor (MINOR + 1, and 3.13 -> 4.0), or to another minor
  while a stable feature flag is disabled or unknown; a package dpkg left half-done;
- a controller whose versions are unknown (None) gets no change; `seen` says so.

- a controller whose upgrade turn an earlier run began and did not finish (its marker,
  PackageVersions "pending") has a turn too, even with nothing left to install: the turn
  finishes what was left (start, rejoin, back in service), then upgrades what still differs;
- refused while a controller is in maintenance (maintenance.py back first): a turn takes a
  controller's clients away and needs every other one serving.

Each turn's shell (turn_commands(), pure, tested as a table): on its controller, its marker
first (the start time in it), the prechecks again on the host (every member in the Primary
component and this one Synced, RabbitMQ without alarms or partitions, not quorum-critical when
its broker stops), the VIP away (the maintenance marker at AWAY: keepalived FAULT), RabbitMQ
drained when it is upgraded, the affected units stopped, apt-get install PKG=VERSION with a
policy-rc.d that lets nothing start, the units started, Galera Synced and rejoined by IST (an
SST fails the turn: galera_gcache_size), mariadb-upgrade after a new MariaDB major, RabbitMQ
revived and every broker running; the database writes moved off the writer, and back, on every
HAProxy (operations/upgrade.py); then the VIP marker cleared, keepalived out of FAULT waited for (it may take the VIP again), the marker removed, the seconds said.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from config.debversion import Version
from config.packages import UNIT_OF
from facts.galera import SOCKET_UNITS, members_check
from facts.packages import UPGRADE_MARKER
from operations.common import APT_TIMEOUT, unit_log
from operations.galera_plan import restart_order

# MariaDB majors a Galera cluster may mix during a rolling upgrade: each and the next.
MARIADB_MAJORS = ("10.6", "10.11", "11.4", "11.8")
MARIADB = ("mariadb-server", "mariadb-client", "mariadb-backup")
RABBITMQ = "rabbitmq-server"
# The last minor of each RabbitMQ major: only from it to the next major's .0.
RABBITMQ_LAST_MINOR = {3: 13}
FULL_STOP = "docs/operations.md \"Upgrades\": the full-stop path"


@dataclass(frozen=True)
class Change:
    node: str
    package: str
    installed: str | None  # None: not installed
    wanted: str
    how: str  # "rolling" (an upgrade, one controller at a time) or "install" (not installed yet)
    then: str = ""  # what the turn runs after the package: "mariadb-upgrade" for a new MariaDB major

    def __str__(self) -> str:
        after = f" (then {self.then})" if self.then else ""
        return f"{self.package} {self.installed or '(not installed)'} → {self.wanted}, {self.how}{after}"


@dataclass(frozen=True)
class UpgradePlan:
    changes: tuple[Change, ...]  # in turn order, then by package
    turns: tuple[str, ...]  # the controllers that change, one at a time, in this order
    seen: str = ""  # controllers whose versions are unknown, one line
    pending: tuple[str, ...] = ()  # controllers whose turn an earlier run left unfinished

    def of(self, node: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.node == node)

    def rolling(self, node: str) -> tuple[Change, ...]:
        """The changes of a controller's turn (a package not yet installed is its component's)."""
        return tuple(c for c in self.changes if c.node == node and c.how == "rolling")

    def line(self, node: str) -> str:
        """What the blast radius says of a controller: "mariadb-server A → B, rolling; ..."."""
        return "; ".join(map(str, self.of(node)))

    def turn_line(self, node: str) -> str:
        """The blast radius's line of a controller's turn: its changes, then what the turn does."""
        changes = self.rolling(node)
        finish = "finish the upgrade turn an earlier run left (start, rejoin, back in service)" if node in self.pending else ""
        if not changes:
            return finish
        return "; ".join(filter(None, [finish, "; ".join(map(str, changes)) + f" ({', '.join(turn_steps(changes))})"]))


class UpgradeRefused(Exception):
    """Every refusal of a plan, one per line, each naming the controller and the supported path."""


def mariadb_major(version: str) -> str:
    """"1:10.11.19-0+deb12u1" -> "10.11"."""
    return ".".join(Version(version).upstream.split(".")[:2])


def rabbitmq_minor(version: str) -> tuple[int, int] | None:
    """"3.12.1-1" -> (3, 12); None when the upstream is not digits.digits..."""
    parts = Version(version).upstream.split(".")[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def mariadb_jump(node: str, package: str, old: str, new: str) -> str | None:
    a, b = mariadb_major(old), mariadb_major(new)
    if a == b:
        return None
    chain = " → ".join(MARIADB_MAJORS)
    if a not in MARIADB_MAJORS or b not in MARIADB_MAJORS:
        return (f"{node}: {package} {old} → {new}: MariaDB {a} → {b} is not a supported rolling upgrade "
                f"(supported majors: {chain}); use the full-stop path ({FULL_STOP})")
    i, j = MARIADB_MAJORS.index(a), MARIADB_MAJORS.index(b)
    if j > i + 1:
        steps = " → ".join(MARIADB_MAJORS[i:j + 1])
        return (f"{node}: {package} {old} → {new} jumps over a MariaDB major ({a} → {b}): a Galera cluster mixes only "
                f"adjacent majors; pin the next major first, one deploy per step ({steps}), or use the full-stop path ({FULL_STOP})")
    return None


def rabbitmq_path(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """The minors a RabbitMQ upgrade from `a` to `b` goes through, both included."""
    path = [a]
    while path[-1] < b:
        major, minor = path[-1]
        last = RABBITMQ_LAST_MINOR.get(major)
        path.append((major + 1, 0) if last is not None and minor >= last else (major, minor + 1))
    return path


def rabbitmq_jump(node: str, old: str, new: str, flags: dict | None) -> str | None:
    a, b = rabbitmq_minor(old), rabbitmq_minor(new)
    if a is None or b is None:
        return f"{node}: {RABBITMQ} {old} → {new}: not a RabbitMQ version of digits (major.minor); pin a released version"
    if a == b:
        return None
    path = rabbitmq_path(a, b)
    if len(path) > 2:
        steps = " → ".join(f"{x}.{y}" for x, y in path)
        return (f"{node}: {RABBITMQ} {old} → {new} jumps over a RabbitMQ minor: RabbitMQ moves one minor at a time; "
                f"pin each in turn, one deploy per step ({steps}), enabling every stable feature flag before each")
    if flags is None:
        return (f"{node}: {RABBITMQ} {old} → {new}: its feature flags are unknown (rabbitmqctl list_feature_flags did not "
                "answer); every stable flag must be enabled before a minor upgrade: start RabbitMQ and run again")
    off = sorted(name for name, f in flags.items() if _blocks(f))
    if off:
        return (f"{node}: {RABBITMQ} {old} → {new} with stable feature flags disabled ({', '.join(off)}): "
                "run `rabbitmqctl enable_feature_flag all` on one node, then deploy again")
    return None


def _blocks(flag: dict) -> bool:
    """A feature flag that stops a RabbitMQ minor upgrade: stable and not enabled."""
    return flag.get("stability") == "stable" and flag.get("state") != "enabled"


def plan(versions: dict[str, dict | None], pins: dict[str, str], order: list[str], writer: str,
         holder: str | None = None, feature_flags: dict[str, dict | None] | None = None,
         away: frozenset = frozenset()) -> UpgradePlan:
    """The changes and turns of a site's pins, or UpgradeRefused with every refusal. Pure.

    + versions: {controller: PackageVersions fact}; None (or absent): could not be read
    + pins: package_versions, {package: version}
    + order: the inventory's controllers, in order
    + writer: the database writer (config.site.Site.writer); holder: the VIP holder, if one
    + feature_flags: {controller: RabbitmqFeatureFlags fact's "flags"}; None: unknown
    + away: the controllers in maintenance (operations/maintenance_marker.py)
    """
    # The cluster's flags as the nodes that answered see them; a flag one of them does not see
    # enabled reads as not enabled, and one any of them sees stable and not enabled blocks a
    # minor, whichever node says so first (None: no node answered).
    seen_flags = [f for f in (feature_flags or {}).values() if f]
    flags = None
    if seen_flags:
        flags = {}
        for node_flags in seen_flags:
            for name, f in node_flags.items():
                if name not in flags or (f.get("state") != "enabled" and not _blocks(flags[name])) or _blocks(f):
                    flags[name] = f
    changes, refusals, unknown = [], [], []
    for node in order:
        st = versions.get(node)
        if st is None:
            unknown.append(node)
            continue
        for package, wanted in sorted(pins.items()):
            installed = st.get("installed", {}).get(package)
            offered = st.get("available", {}).get(package, [])
            if package in st.get("unfinished", {}):
                refusals.append(f"{node}: {package} is half-installed (dpkg status {st['unfinished'][package]!r}); "
                                f"finish it first (dpkg --configure -a, apt-get -f install), then deploy again")
                continue
            if installed is not None and Version(installed) == Version(wanted):
                continue
            if wanted not in offered:
                refusals.append(f"{node}: {package} {wanted} is not offered by apt on {node} (offered: "
                                f"{', '.join(offered) or 'none'}); run apt-get update there, add the repository "
                                f"that carries it, or pin a version it offers")
                continue
            if installed is None:
                changes.append(Change(node, package, None, wanted, "install"))
                continue
            if Version(wanted) < Version(installed):
                refusals.append(f"{node}: {package} {installed} → {wanted} is a downgrade, never done in place; "
                                f"pin {installed} or newer (going back is a restore from backup, not a deploy)")
                continue
            reason = (mariadb_jump(node, package, installed, wanted) if package in MARIADB
                      else rabbitmq_jump(node, installed, wanted, flags) if package == RABBITMQ else None)
            if reason:
                refusals.append(reason)
                continue
            major = package == "mariadb-server" and mariadb_major(installed) != mariadb_major(wanted)
            changes.append(Change(node, package, installed, wanted, "rolling", "mariadb-upgrade" if major else ""))
    pending = [n for n in order if (versions.get(n) or {}).get("pending")]
    rolling = sorted({c.node for c in changes if c.how == "rolling"} | set(pending), key=order.index)
    if rolling and away:
        refusals.append(f"{', '.join(rolling)}: a rolling upgrade while {', '.join(sorted(away))} "
                        f"{'is' if len(away) == 1 else 'are'} in maintenance: each turn takes one controller's "
                        f"clients away and needs every other one serving; bring it back first "
                        f"(make maintenance-back NODE={sorted(away)[0]}), then deploy again")
    if refusals:
        raise UpgradeRefused("\n".join(refusals))
    nodes = [n for n in order if any(c.node == n for c in changes) or n in pending]
    turns = restart_order(nodes, writer, holder)
    ordered = sorted(changes, key=lambda c: (turns.index(c.node), c.package))
    seen = f"versions unknown (not planned): {', '.join(unknown)}" if unknown else ""
    return UpgradePlan(tuple(ordered), tuple(turns), seen, tuple(pending))


# --- a turn's shell, pure ------------------------------------------------------------------

# The units a turn stops, in this order, and starts in the reverse: the VIP's keeper and the
# proxy first (the VIP is away already), the backends after; mariadb starts first.
STOP_ORDER = ("keepalived", "haproxy", "rabbitmq-server", "memcached", "mariadb")
# The maintenance marker's value while a turn runs: keepalived's track_file (weight 0) reads any
# value but 0 as FAULT, so the VIP leaves; the deploy's Maintenance fact reads only 1 as "in
# maintenance", so an interrupted turn is not taken for the operator's maintenance.
AWAY = 2
POLICY_RC = "/usr/sbin/policy-rc.d"
POLICY_TAG = "openstack-ha: an upgrade turn, nothing starts"  # ours, removed by the turn
# The joiner's journal when mariadb came back by a full state transfer: wsrep_sst_mariabackup's
# line once it wipes the datadir (an IST says "IST received" instead; for rsync: docs/operations.md).
SST_LINE = "Proceeding with SST"
IST_LINE = "IST received"
CTL = "timeout 60 rabbitmqctl"
DIAG = "timeout 60 rabbitmq-diagnostics -q"


@dataclass(frozen=True)
class TurnCommands:
    """One controller's turn: `before` and `work` and `after` on it; between them, when
    `moves_writes`, the database writes moved off it on every HAProxy (and back after `work`)."""
    before: tuple[str, ...]
    work: tuple[str, ...]
    after: tuple[str, ...]
    moves_writes: bool


def units_of(packages) -> list[str]:
    """The units an upgrade of `packages` stops, in STOP_ORDER."""
    wanted = {UNIT_OF[p] for p in packages if p in UNIT_OF}
    return [u for u in STOP_ORDER if u in wanted]


def turn_steps(changes) -> list[str]:
    """What a turn does, for the blast radius and --dry: "drain, stop mariadb, upgrade, ..."."""
    units = units_of(c.package for c in changes)
    rabbit = "rabbitmq-server" in units
    then = sorted({c.then for c in changes if c.then})
    return ["drain", f"stop {' '.join(units)}" if units else "stop nothing",
            "upgrade", "start", *(["IST"] if "mariadb" in units else []), *then,
            *(["revive"] if rabbit else []), "back"]


def fail(node: str, what: str, unit: str | None = None) -> str:
    """Shell: what failed, named with the controller, the unit's journal (if any), exit 1."""
    return "{ echo " + shlex.quote(f"{node}: {what}") + " >&2; " + (f"{unit_log(unit)}; " if unit else "") + "exit 1; }"


def start_commands(node: str, unit: str, members: int, wait, gcache: str, fresh: bool) -> list[str]:
    """Shell: `unit` started and serving again; mariadb Synced (rejoined by IST when `fresh`,
    i.e. it was stopped by this turn: an SST fails it), RabbitMQ revived and every broker running."""
    if unit == "mariadb":
        cmds = [f"timeout 600 systemctl start mariadb || {fail(node, 'mariadb did not start', 'mariadb')}",
                wait(members_check(members), f"{node} Synced in a Primary component of {members}",
                     unit_log("mariadb"))]
        if fresh:
            sst = shlex.quote(f"{node}: mariadb rejoined by a full state transfer (SST), not IST: the writes it missed "
                              f"were no longer in a donor's gcache (galera_gcache_size {gcache}); raise "
                              "galera_gcache_size, deploy, then deploy again for the next turns")
            cmds.append(f"j=$(journalctl -u mariadb --since @$(cat {UPGRADE_MARKER}) --no-pager -o cat 2>/dev/null); "
                        f"if echo \"$j\" | grep -qF {shlex.quote(SST_LINE)}; then echo {sst} >&2; exit 1; fi; "
                        f"echo \"$j\" | grep -qF {shlex.quote(IST_LINE)} && echo '{node}: rejoined by IST' "
                        f"|| echo '{node}: rejoined, no state transfer in its journal'")
        return cmds
    if unit == "rabbitmq-server":
        return [f"timeout 300 systemctl start rabbitmq-server || {fail(node, 'rabbitmq-server did not start', unit)}",
                wait(f"{CTL} await_startup", f"RabbitMQ to start on {node}", unit_log(unit)),
                f"timeout 120 rabbitmq-upgrade revive || {fail(node, 'rabbitmq-upgrade revive failed', unit)}",
                wait(f"{CTL} await_online_nodes {members}", f"{members} RabbitMQ nodes running, {node} among them",
                     unit_log(unit))]
    return [f"timeout 120 systemctl start {unit} || {fail(node, f'{unit} did not start', unit)}",
            wait(f"systemctl is-active -q {unit}", f"{unit} active on {node}", unit_log(unit))]


def install_command(node: str, changes) -> str:
    """Shell: apt-get install PKG=VERSION..., nothing started by the packages' scripts (a
    policy-rc.d that answers 101, ours, removed whatever the outcome; another one there is
    left alone and the turn fails); MariaDB's socket units (facts.galera.SOCKET_UNITS) disabled
    again after it, in this run: its postinst enables mariadb.socket (the galera component
    disables them too, for an upgrade made by hand)."""
    pkgs = " ".join(shlex.quote(f"{c.package}={c.wanted}") for c in sorted(changes, key=lambda c: c.package))
    theirs = shlex.quote(f"{node}: {POLICY_RC} exists and is not the upgrade's: not upgraded; remove it (or "
                         "finish what wrote it), then deploy again")
    body = shlex.quote(f"#!/bin/sh\n# {POLICY_TAG}\nexit 101\n")
    return (f"if test -e {POLICY_RC} && ! grep -qF {shlex.quote(POLICY_TAG)} {POLICY_RC}; then echo {theirs} >&2; exit 1; fi; "
            f"printf %s {body} > {POLICY_RC} && chmod 755 {POLICY_RC} || exit 1; "
            f"DEBIAN_FRONTEND=noninteractive timeout {APT_TIMEOUT} apt-get install -y -q --no-install-recommends "
            f"-o Dpkg::Options::=--force-confold {pkgs}; rc=$?; rm -f {POLICY_RC}; "
            + (f"systemctl disable -q {' '.join(SOCKET_UNITS)} 2>/dev/null; " if any(c.package in MARIADB for c in changes) else "")
            + f"[ $rc = 0 ] || {{ echo '{node}: apt-get install {pkgs} failed (exit '$rc'): its services stay stopped; "
            "fix apt, then deploy again (the turn is finished then)' >&2; exit 1; }")


def turn_commands(node: str, changes, *, pending: bool, pinned, members: int, writer: str, vip_away: list[str],
                  vip_back: str, wait, gcache: str, vip_ready: str = "") -> TurnCommands:
    """One controller's turn, as shell. Pure but for `wait` (wait(check, what, on_fail) -> a bounded
    wait, operations.common.wait_until).

    + changes: the controller's rolling changes (UpgradePlan.rolling); may be empty when pending
    + pending: an earlier run left this turn unfinished: first everything the upgrade may have
      stopped (the units of `pinned`) started and serving again, our policy-rc.d removed
    + pinned: every pinned package (package_versions)
    + members: the controllers (Galera and RabbitMQ members every check asks for)
    + vip_away: shell that takes the VIP away (the maintenance marker at AWAY, waited for)
    + vip_back: shell that clears the marker the turn set (never an operator's 1)
    + vip_ready: shell that waits until this controller may take the VIP again (keepalived out
      of FAULT: check_alive passed `rise` times since HAProxy came back); the turn ends after it
    """
    units = units_of(c.package for c in changes)
    rabbit = "rabbitmq-server" in units
    # The marker first (the turn's start time in it): a turn interrupted from here on is finished by the next run.
    before = [f"mkdir -p {shlex.quote(UPGRADE_MARKER.rsplit('/', 1)[0])} && date +%s > {UPGRADE_MARKER}"]
    if pending:
        before += [f"! grep -qsF {shlex.quote(POLICY_TAG)} {POLICY_RC} || rm -f {POLICY_RC}"]
        for unit in reversed(units_of(pinned)):
            before += start_commands(node, unit, members, wait, gcache, fresh=False)
        if "mariadb" in units_of(pinned):
            # a new major whose mariadb-upgrade the interrupted turn did not reach (a no-op when done)
            before.append(f"timeout 900 mariadb-upgrade --silent || {fail(node, 'mariadb-upgrade failed', 'mariadb')}")
    work: list[str] = []
    if changes:
        before += [
            wait(members_check(members), f"every Galera member ({members}) in the Primary component and {node} Synced "
                 "before its upgrade", f"echo '{node}: not upgraded' >&2"),
            f"{DIAG} check_local_alarms || {fail(node, 'RabbitMQ has an alarm (memory or disk): not upgraded')}",
            f"{CTL} -q cluster_status --formatter json | grep -Eq '\"partitions\": *(\\{{\\}}|\\[\\])' "
            f"|| {fail(node, 'RabbitMQ sees a partition (rabbitmqctl cluster_status): not upgraded')}",
            *([f"{DIAG} check_if_node_is_quorum_critical || "
               f"{fail(node, 'its RabbitMQ is quorum-critical (a quorum queue would lose its majority): not upgraded')}"]
              if rabbit else []),
            *vip_away,
        ]
        work += [f"timeout 300 rabbitmq-upgrade drain || {fail(node, 'rabbitmq-upgrade drain failed', 'rabbitmq-server')}"] * rabbit
        work += [f"timeout 300 systemctl stop {u} || {fail(node, f'{u} did not stop', u)}" for u in units]
        work.append(install_command(node, changes))
        for unit in reversed(units):
            work += start_commands(node, unit, members, wait, gcache, fresh=True)
        if any(c.then == "mariadb-upgrade" for c in changes):
            work.append(f"timeout 900 mariadb-upgrade --silent || {fail(node, 'mariadb-upgrade failed', 'mariadb')}")
    after = [vip_back, *([vip_ready] if vip_ready else []),
             f"test ! -e {UPGRADE_MARKER} || echo \"{node} upgraded in $(( $(date +%s) - $(cat {UPGRADE_MARKER}) )) s\"",
             f"rm -f {UPGRADE_MARKER}"]
    # The writer's turn moves the writes off it and back; so does a pending one, whose writes an
    # interrupted turn may have left moved off (a no-op move when they were not).
    moves = node == writer and ("mariadb" in units or (pending and "mariadb" in units_of(pinned)))
    return TurnCommands(tuple(before), tuple(work), tuple(after), moves)
