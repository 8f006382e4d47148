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

The deploy only announces the plan for now (operations/upgrade.py): the rolling upgrade
itself (drain, stop, upgrade, start, rejoin by IST, per turn) is not yet wired.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.debversion import Version
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

    def of(self, node: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.node == node)

    def line(self, node: str) -> str:
        """What the blast radius says of a controller: "mariadb-server A → B, rolling; ..."."""
        return "; ".join(map(str, self.of(node)))


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
    off = sorted(name for name, f in flags.items() if f.get("stability") == "stable" and f.get("state") != "enabled")
    if off:
        return (f"{node}: {RABBITMQ} {old} → {new} with stable feature flags disabled ({', '.join(off)}): "
                "run `rabbitmqctl enable_feature_flag all` on one node, then deploy again")
    return None


def plan(versions: dict[str, dict | None], pins: dict[str, str], order: list[str], writer: str,
         holder: str | None = None, feature_flags: dict[str, dict | None] | None = None) -> UpgradePlan:
    """The changes and turns of a site's pins, or UpgradeRefused with every refusal. Pure.

    + versions: {controller: PackageVersions fact}; None (or absent): could not be read
    + pins: package_versions, {package: version}
    + order: the inventory's controllers, in order
    + writer: the database writer (config.site.Site.writer); holder: the VIP holder, if one
    + feature_flags: {controller: RabbitmqFeatureFlags fact's "flags"}; None: unknown
    """
    # The cluster's flags as the nodes that answered see them; a flag one of them does not see
    # enabled reads as not enabled (None: no node answered).
    seen_flags = [f for f in (feature_flags or {}).values() if f]
    flags = None
    if seen_flags:
        flags = {}
        for node_flags in seen_flags:
            for name, f in node_flags.items():
                if name not in flags or f.get("state") != "enabled":
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
    if refusals:
        raise UpgradeRefused("\n".join(refusals))
    nodes = [n for n in order if any(c.node == n for c in changes)]
    turns = restart_order(nodes, writer, holder)
    ordered = sorted(changes, key=lambda c: (turns.index(c.node), c.package))
    seen = f"versions unknown (not planned): {', '.join(unknown)}" if unknown else ""
    return UpgradePlan(tuple(ordered), tuple(turns), seen)
