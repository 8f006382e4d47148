"""The restore rehearsal's hosts (backup_rehearsal_hosts), checked: pure, shared by preflight
(config/preflight.py) and the rehearsal's plan (operations/rehearsal_plan.py), so that the
inventory is refused before anything connects and the entry refuses the same thing again.

A rehearsal restores a backup as a Galera cluster of its own: it must never land on a
controller (its datadir would be replaced, or a second cluster would answer on its address).
A rehearsal host is therefore refused when it has a controller's name or address, the VIP or
the external VIP, or the address of another rehearsal host.
"""

from __future__ import annotations

import ipaddress

KEY = "backup_rehearsal_hosts"
GROUP = "rehearsal"  # the pyinfra group inventories/rehearsal.py makes of them


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def host_problems(hosts: dict[str, str], controllers: list[tuple[str, str]], vips: list[str | None]) -> list[tuple[str, str, str]]:
    """(host, what is wrong, the fix) for each rehearsal host that could touch the production
    cluster. `controllers`: (name, address); `vips`: the VIP and the external VIP (None: unset)."""
    out = []
    fix = f"name a host that is not a controller in {KEY} (a spare machine, or fresh lab nodes)"
    seen: dict[str, str] = {}
    for name, addr in hosts.items():
        for cname, caddr in controllers:
            if name == cname:
                out.append((name, f"{name} is the name of controller {cname}: a rehearsal never restores onto "
                                  "the production cluster", fix))
            elif _same(addr, caddr):
                out.append((name, f"{name}'s address {addr} is controller {cname}'s: a rehearsal never restores onto "
                                  "the production cluster", fix))
        for vip in vips:
            if vip and _same(addr, vip):
                out.append((name, f"{name}'s address {addr} is the site's VIP {vip}", fix))
        twin = next((n for a, n in seen.items() if _same(a, addr)), None)
        if twin is not None:
            out.append((name, f"{name}'s address {addr} is also {twin}'s", f"give each host of {KEY} its own address"))
        seen[addr] = name
    return out
