"""Package versions (site key package_versions): the pinned packages held by an apt
preferences file, and the upgrade plan announced, before any package is installed.

Nothing when the site pins nothing (no fact of its own, no file, no command: the deploy of
before), but the removal of a pins file an earlier run left (its state is one more line of the
managed files' read). The plan (operations/upgrade_plan.py) is taken once from every controller's
installed and offered versions; a refusal (a downgrade, a jump over a MariaDB major or a
RabbitMQ minor, a version apt does not offer) ends the run before any change. The planned
upgrades are shown in --dry and the blast radius; the rolling upgrade itself (drain, stop,
upgrade, start, rejoin, per turn) is not applied yet (docs/operations.md "Upgrades").

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

Until the rolling upgrade is applied, mind what the file does on a controller still behind its
pin: apt's candidate there is the pinned version, so a hand-run `apt-get upgrade`, or
unattended-upgrades when the pin comes from an origin it takes (Debian's security archive),
moves the package to the pin outside any turn, as it would move it to any security update
without a pin. It never moves it past the pin, and never down.

A site that empties package_versions gets the file removed (announced: --dry and the blast
radius show it): a pin left behind would hold the packages at versions the site no longer
names, against every security update.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from facts.packages import PackageVersions
from facts.rabbitmq import RabbitmqFeatureFlags
from config.paths import APT_PINS
from operations.before import facts_of_all_controllers, file_state, known_in_run
from operations.common import announce, decided_once, shell, site
from operations.galera import vip_holders
from operations.steps import install_files
from operations.upgrade_plan import RABBITMQ, UpgradePlan, UpgradeRefused, plan

NOT_YET = "the upgrade is planned, not applied by this deploy yet: docs/operations.md \"Upgrades\""


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
               holders[0] if len(holders) == 1 else None, flags)
    if got.seen:
        logger.warning(f"package_versions: {got.seen}")
    return got


@deploy("Package versions")
def configure():
    """The pins held (apt preferences) and the planned upgrades announced, turn by turn; with
    no pin, a pins file an earlier run wrote is removed (nothing else is read or run)."""
    if not site()["package_versions"]:
        left = file_state(APT_PINS) is not None
        announce(left, f"remove {APT_PINS}: package_versions is empty, apt's candidates are no longer held")
        shell(f"apt: no {APT_PINS} (package_versions is empty)", [f"rm -f {APT_PINS}"], when=left)
        return
    upgrades = upgrade_plan()
    install_files("apt")
    for node in upgrades.turns:  # every host announces every turn: the steps line up
        # A package not yet installed is installed by this run, at its pin (the file above
        # makes the pinned version apt's candidate); an installed one is only announced.
        rolling = any(c.how == "rolling" for c in upgrades.of(node))
        announce(node == host.name, upgrades.line(node) + (f" ({NOT_YET})" if rolling else ""))
