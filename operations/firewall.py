"""The host firewall on every controller (config/firewall.py): the project's nftables table,
checked by `nft -c` on the host before it replaces the old rules, loaded in one transaction
(connections the new rules still admit survive), and at every boot by its own unit."""

from __future__ import annotations

from pyinfra.api import deploy

from config.files import FIREWALL_NFT, FIREWALL_UNIT, expected_rules
from config.firewall import TABLE, rules
from config.packages import PACKAGES
from facts.firewall import FirewallState
from operations.before import facts_of_all_controllers, planned_fact, unit_state
from operations.common import announce, controllers_in_run, decided_once, shell, site
from operations.steps import daemon_reload, install_files, mark_pending, mark_reload, packages, service

UNIT_FILE = f"/etc/systemd/system/{FIREWALL_UNIT}.service"


def left_out_refusal(states: dict, limited: list[str], admitted: dict[str, str]) -> str | None:
    """Why this run must not go on, or None. Pure.

    A controller a --limit leaves out keeps the rules it has: if they do not admit a controller
    of this run (a new one), that controller's Galera and RabbitMQ traffic is dropped there
    and its join would stall. `admitted`: {name: address} of the controllers in the run.
    A left-out controller whose table could not be read (None: unreachable, or its read
    failed) is a partial picture: refused when the run has a controller some table does not
    admit yet (a new one), which that controller's table may not admit either."""
    cut = {}
    for name in limited:
        st = states.get(name)
        if not st or not st.get("loaded"):
            continue  # no table there: nothing dropped
        missing = sorted(n for n, addr in admitted.items() if addr not in st.get("controllers", []))
        if missing:
            cut[name] = missing
    if cut:  # every such controller named, and a --limit that takes them all in
        said = "; ".join(f"{name} (left out by --limit) has a firewall that does not admit {', '.join(missing)}"
                         for name, missing in cut.items())
        return (f"{said}: their cluster traffic would be dropped there. Run the deploy without --limit, "
                f"or with --limit {','.join(sorted({*cut, *admitted}))}; no host was changed.")
    known = [st for st in states.values() if st and st.get("loaded")]
    new = sorted(n for n, addr in admitted.items()
                 if not (states.get(n) or {}).get("loaded") or any(addr not in st.get("controllers", []) for st in known))
    unknown = [name for name in limited if states.get(name) is None]
    if unknown and new:
        return (f"{', '.join(unknown)} (left out by --limit) could not be read, and {', '.join(new)} may be new to "
                f"its firewall: its cluster traffic could be dropped there. Run the deploy without --limit once "
                f"{', '.join(unknown)} can be reached; no host was changed.")
    return None


class FirewallRefusal(Exception):
    """A --limit run that a left-out controller's table would cut off (left_out_refusal)."""


@decided_once("firewall: ", FirewallRefusal)
def limit_checked() -> None:
    """Refuses, once for every host, a --limit run whose new controllers a left-out
    controller's table would drop (left_out_refusal)."""
    s = site()
    in_run = controllers_in_run()
    limited = [c.name for c in s.controllers if c.name not in in_run]
    if not limited:
        return
    why = left_out_refusal(facts_of_all_controllers(FirewallState), limited,
                           {c.name: c.address for c in s.controllers if c.name in in_run})
    if why:
        raise FirewallRefusal(why)


@deploy("Firewall")
def configure():
    """The project's table on this controller (firewall True), else none: a site that turns it
    off gets the table, its unit and its rules file removed. A table that differs from the
    rules (flushed by hand, an earlier run cut short) is loaded again."""
    if not site()["firewall"]:
        installed = unit_state(FIREWALL_UNIT).get("enabled") not in (None, "not-found")
        announce(installed, f"remove the host firewall (table inet {TABLE}): firewall is False")
        shell("firewall: off (firewall False)",
              [f"systemctl disable {FIREWALL_UNIT}", f"nft delete table inet {TABLE} 2>/dev/null || true",
               f"rm -f {FIREWALL_NFT} {UNIT_FILE}", "systemctl daemon-reload"], when=installed)
        return
    limit_checked()
    packages(name="firewall: packages", names=list(PACKAGES["firewall"]))
    load = mark_pending(FIREWALL_UNIT, "firewall")
    reload = mark_reload("firewall", (UNIT_FILE,))
    install_files("firewall", validate={FIREWALL_NFT: "nft -c -f {path}"})
    daemon_reload("firewall: reload systemd units", "firewall", reload)
    now = planned_fact(FirewallState)
    drifted = (not now.get("loaded") or set(now.get("controllers", [])) != set(rules(site()).controllers)
               or now.get("rules") not in (None, expected_rules(site())))
    announce(load or drifted, f"load the host firewall (table inet {TABLE}, one transaction)")
    service(name="firewall: loaded", unit=FIREWALL_UNIT, restarted=load or drifted)
    # VRRP adverts a new table admits again end a split brain within one advert; adverts it
    # drops give one after 3 (a backup takes over): the report comes after either.
    settle = 3 * site()["keepalived_advert_int"] + 1
    shell(f"firewall: VRRP settles ({settle} s) after the new table", [f"sleep {settle}"], when=load or drifted)
