"""Package versions (site key package_versions): the pinned packages held by an apt
preferences file, and the upgrade plan announced, before any package is installed.

Nothing at all when the site pins nothing (no fact, no file, no command: the deploy of
before). The plan (operations/upgrade_plan.py) is taken once from every controller's
installed and offered versions; a refusal (a downgrade, a jump over a MariaDB major or a
RabbitMQ minor, a version apt does not offer) ends the run before any change. The planned
upgrades are shown in --dry and the blast radius; the rolling upgrade itself (drain, stop,
upgrade, start, rejoin, per turn) is not applied yet (docs/operations.md "Upgrades").

Until it is, mind what the preferences file does on a controller still behind its pin: apt's
candidate there is the pinned version, so a hand-run `apt-get upgrade`, or unattended-upgrades
when the pin comes from an origin it takes (Debian's security archive), moves the package to
the pin outside any turn, as it would move it to any security update without a pin. It never
moves it past the pin, and never down: a downgrade pin is refused before the file is written.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from facts.packages import PackageVersions
from facts.rabbitmq import RabbitmqFeatureFlags
from operations.before import facts_of_all_controllers, known_in_run
from operations.common import announce, decided_once, site
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
    """The pins held (apt preferences) and the planned upgrades announced, turn by turn."""
    if not site()["package_versions"]:
        return
    upgrades = upgrade_plan()
    install_files("apt")
    for node in upgrades.turns:  # every host announces every turn: the steps line up
        # A package not yet installed is installed by this run, at its pin (the file above
        # makes the pinned version apt's candidate); an installed one is only announced.
        rolling = any(c.how == "rolling" for c in upgrades.of(node))
        announce(node == host.name, upgrades.line(node) + (f" ({NOT_YET})" if rolling else ""))
