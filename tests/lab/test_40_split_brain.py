"""Split brain on the lab: VRRP advertisements that stop reaching one node.

With multicast VRRP (the default, as in the reference article), a packet filter inside the
holder's network namespace that drops the multicast advertisements (destination 224.0.0.18)
going out and coming in makes the others believe the holder is gone: after 3 x advert_int
the next one takes the VIP too, and the holder, hearing nobody, keeps it: two nodes hold it.
(Dropped on one standby only, the standby would take the VIP and, if its priority is higher,
the holder would hear it and step down: a takeover, not a split brain.) The health report must then fail, naming both holders. With
`keepalived_unicast: True` the advertisements travel to each peer's own address; the same
filter no longer touches them and exactly one node keeps the VIP.

Each drill starts from a healthy lab (fixture `healthy`, tests/lab/conftest.py) and restores
it; the unicast drill deploys with the option on and deploys back to the inventory's data.
"""

from __future__ import annotations

import time

from lab import drills
from lab.drills import log

MULTICAST_VRRP = "ip daddr 224.0.0.18"


def test_multicast_adverts_dropped_give_two_holders_and_the_report_names_both(healthy):
    holder = healthy["vip_holders"][0]
    t0 = time.monotonic()
    try:
        drills.drop_packets(holder, MULTICAST_VRRP)
        holders, _ = drills.wait_for("a second VIP holder", lambda: (lambda h: h if len(h) == 2 else None)(drills.holders()), 30)
        t_split = time.monotonic() - t0
        assert holder in holders
        other = next(n for n in holders if n != holder)
        assert drills.dropped(holder) > 0  # the filter did drop advertisements
        report = drills.verify_report()
        assert not report["ok"]
        assert sorted(report["vip_holders"]) == sorted([holder, other])
        split = [f for f in report["failures"] if "split brain" in f]
        assert split and holder in split[0] and other in split[0], report["failures"]
        log(f"split brain: {other} took the VIP {t_split:.1f}s after {holder}'s multicast VRRP was dropped; "
            f"report: {split[0]}")
    finally:
        drills.allow_packets(holder)
    # the filter gone, the two masters hear each other: one steps down
    drills.wait_for("one VIP holder again", lambda: len(drills.holders()) == 1, 30)
    log(f"filter removed: {drills.holders()[0]} alone holds the VIP")


def test_unicast_vrrp_keeps_one_holder_with_multicast_dropped(healthy):
    try:
        run = drills.deploy(data={"keepalived_unicast": True})
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        holders, _ = drills.wait_for("one VIP holder after the unicast reload",
                                     lambda: (lambda h: h if len(h) == 1 else None)(drills.holders()), 30)
        holder = holders[0]
        drills.drop_packets(holder, MULTICAST_VRRP)
        # 10 s is over 3 x advert_int (1 s) + skew: a standby that hears nothing has taken over by then
        end = time.monotonic() + 10
        seen = set()
        while time.monotonic() < end:
            now = drills.holders()
            seen.add(tuple(now))
            assert now == [holder], f"VIP holders {now} with unicast VRRP (multicast dropped on {holder})"
            time.sleep(0.25)
        log(f"unicast VRRP, multicast dropped on {holder} for 10 s: {holder} alone held the VIP "
            f"({len(seen)} distinct holder set(s) seen); multicast packets dropped: {drills.dropped(holder)}")
        report = drills.verify_report()
        assert report["vip_holders"] == [holder] and report["ok"], report.get("failures")
    finally:
        for n in drills.running():
            drills.allow_packets(n)
        run = drills.deploy()
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
