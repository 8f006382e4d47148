"""Package versions (site key package_versions): the pinned packages held by an apt
preferences file, and the upgrade plan announced, before any package is installed.

Nothing when the site pins nothing (no fact of its own, no file, no command: the deploy of
before), but the removal of a pins file an earlier run left (its state is one more line of the
managed files' read). The plan (operations/upgrade_plan.py) is taken once from every controller's
installed and offered versions; a refusal (a downgrade, a jump over a MariaDB major or a
RabbitMQ minor, a version apt does not offer, a rolling upgrade while a controller is in
maintenance) ends the run before any change. The planned upgrades are shown in --dry and the
blast radius, then applied one controller at a time, the writer and the VIP holder last: each
turn's shell is upgrade_plan.turn_commands() (marker, prechecks on the host, VIP away,
RabbitMQ drained, stop, apt-get install PKG=VERSION with nothing auto-started, start, Galera
Synced by IST, mariadb-upgrade for a new major, RabbitMQ revived, back), with the database
writes moved off the writer and back on every HAProxy around it; the roll stops at the first
failure (turn()), and a turn interrupted is finished by the next run (its marker). The seconds
of each turn, and of the roll, are said on the deploy's log (docs/operations.md "Upgrades").

The preferences file gives each pinned version Pin-Priority 999, not 1001. apt reads any
priority of 1000 or more as "install this version even if it is a downgrade": a 1001 pin below
the installed version (a package upgraded past it by hand) makes the next `apt-get upgrade`,
or unattended-upgrades, move the package DOWN, silently, outside any turn and past the plan's
downgrade refusal. From 991 to 999 (apt_preferences(5)) the
pinned version wins over every newer candidate (priority 500) and over the target release, so
the package is held at it or moved up to it, never past it; but never over a more recent
installed version: a package already past its pin is not moved down (apt then takes its
newest candidate, as without a pin), and the plan refuses that pin as a downgrade on the
next run, naming it. The pin holds; it never forces a downgrade (test_package_versions asks
this machine's apt, with 1001 as the control).

Mind what the file does on a controller still behind its pin between the file's write and
its turn (a run stopped at an earlier turn's failure): apt's candidate there is the pinned
version, so a hand-run `apt-get upgrade`, or unattended-upgrades when the pin comes from an
origin it takes (Debian's security archive), moves the package to the pin outside any turn, as
it would move it to any security update without a pin. It never moves it past the pin, and
never down.

A site that empties package_versions gets the file removed (announced: --dry and the blast
radius show it): a pin left behind would hold the packages at versions the site no longer
names, against every security update.
"""

from __future__ import annotations

import time

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, deploy, operation

from facts.packages import PackageVersions
from facts.rabbitmq import RabbitmqFeatureFlags
from config.paths import APT_PINS, MAINTENANCE_FILE
from operations.before import facts_of_all_controllers, file_state, known_in_run
from operations.common import announce, controllers_in_run, decided_once, failed_earlier, one_at_a_time, shell, site, turn, wait_until
from operations.galera import vip_holders, writes_to
from operations.maintenance import vip_away, vip_ready
from operations.maintenance_marker import in_maintenance
from operations.maintenance_plan import back_commands
from operations.runstate import run_dict
from operations.steps import install_files
from operations.upgrade_plan import AWAY, RABBITMQ, UpgradePlan, UpgradeRefused, plan, turn_commands

# The turn's marker cleared only when it is the turn's own (never an operator's maintenance 1).
VIP_BACK = f"! grep -qx {AWAY} {MAINTENANCE_FILE} 2>/dev/null || echo 0 > {MAINTENANCE_FILE}"


def pinned() -> tuple[str, ...]:
    """The packages the site pins, sorted (the facts' argument)."""
    return tuple(sorted(site()["package_versions"]))


@decided_once("package_versions: refused before any change:\n", UpgradeRefused)
def upgrade_plan() -> UpgradePlan:
    """The upgrade plan of this run, shared by every host."""
    s = site()
    versions = known_in_run(facts_of_all_controllers(PackageVersions, names=pinned()), "the package versions")
    flags = None
    if RABBITMQ in s["package_versions"]:
        flags = {n: (f or {}).get("flags") or None for n, f in facts_of_all_controllers(RabbitmqFeatureFlags).items()}
    holders = vip_holders()
    got = plan(versions, s["package_versions"], [c.name for c in s.controllers], s.writer,
               holders[0] if len(holders) == 1 else None, flags, away=in_maintenance())
    if got.seen:
        logger.warning(f"package_versions: {got.seen}")
    return got


def _clock(node: str, last: bool) -> None:
    """A FunctionCommand body, on this machine between a turn's commands: the turn's start
    (last=False), or its seconds on the deploy's log and, after the last turn, the roll's."""
    clocks = run_dict("upgrade clocks")
    now = time.monotonic()
    if not last:
        clocks.setdefault("roll", now)
        clocks[node] = now
        return
    host.log(f"upgrade: {node} upgraded in {now - clocks.get(node, now):.0f} s", logger.warning)
    clocks["done"] = clocks.get("done", 0) + 1
    if clocks["done"] == clocks.get("turns"):
        host.log(f"upgrade: the roll took {now - clocks.get('roll', now):.0f} s in all ({clocks['done']} controllers)",
                 logger.warning)


@operation()
def upgrade_turn(node: str, commands: list, clock: str = "", run: bool = True):
    """
    A part of a controller's upgrade turn: turn() with the deploy's clock around it.

    + node: the controller whose turn it is
    + commands: the turn's shell (upgrade_plan.turn_commands)
    + clock: "start" before the commands, "stop" after them (the seconds on the log), "" none
    + run: False makes it a no-op (every host calls every turn)
    """
    if not run or failed_earlier():
        return
    if clock == "start":
        yield FunctionCommand(_clock, (node, False), {})
    yield from commands
    if clock == "stop":
        yield FunctionCommand(_clock, (node, True), {})


@deploy("Package versions")
def configure():
    """The pins held (apt preferences), the planned upgrades announced, turn by turn, then
    applied one controller at a time; with no pin, a pins file an earlier run wrote is
    removed (nothing else is read or run)."""
    s = site()
    if not s["package_versions"]:
        left = file_state(APT_PINS) is not None
        announce(left, f"remove {APT_PINS}: package_versions is empty, apt's candidates are no longer held")
        shell(f"apt: no {APT_PINS} (package_versions is empty)", [f"rm -f {APT_PINS}"], when=left)
        return
    upgrades = upgrade_plan()
    install_files("apt")
    for node in upgrades.turns:  # every host announces every turn: the steps line up
        # A package not yet installed is installed by this run, at its pin (the file above
        # makes the pinned version apt's candidate), by its component; an installed one is
        # upgraded in its controller's turn.
        announce(node == host.name, upgrades.turn_line(node) or upgrades.line(node))
    order = [c.name for c in s.controllers]
    # A controller a --limit leaves out keeps its versions (announced above): its turn, and the
    # writes' moves around it, are not run at all.
    in_run = controllers_in_run()
    turns = [n for n in upgrades.turns if (upgrades.rolling(n) or n in upgrades.pending) and n in in_run]
    run_dict("upgrade clocks")["turns"] = len(turns)
    listeners = [lst.name for lst in s.listeners]
    db, sock = s.db_listener, s["haproxy_stats_socket"]
    for name, mine in one_at_a_time(turns):
        t = turn_commands(name, upgrades.rolling(name), pending=name in upgrades.pending, pinned=s["package_versions"],
                          members=len(order), writer=s.writer, vip_away=vip_away(name, AWAY), vip_back=VIP_BACK, vip_ready=vip_ready(name),
                          wait=lambda check, what, on_fail: wait_until(check, what, on_fail=on_fail),
                          gcache=s["galera_gcache_size"])
        what = "checked, the VIP away" if upgrades.rolling(name) else "what an earlier run left finished"
        upgrade_turn(name=f"upgrade: {name} marked, {what}", node=name, commands=list(t.before),
                     clock="start", run=mine)
        turn(name=f"upgrade: writes moved off {name} (HAProxy runtime API)", commands=[writes_to(db, name, sock, "maint")],
             run=t.moves_writes)
        upgrade_turn(name=f"upgrade: {name} drained, stopped, upgraded, started", node=name, commands=list(t.work), run=mine)
        # Not after a failed turn (turn() skips it): the writes stay on the next server, and the
        # next run's turn of this controller (its marker) moves them back once it serves.
        turn(name=f"upgrade: writes back to {name} (HAProxy runtime API)",
             commands=back_commands([db], db, name, order, sock, True, lambda check, what: wait_until(check, what, 60)),
             run=t.moves_writes)
        upgrade_turn(name=f"upgrade: {name} back in service", node=name, commands=list(t.after), clock="stop", run=mine)
