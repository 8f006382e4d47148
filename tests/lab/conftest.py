"""Lab tests run against real nodes on this machine (root needed; CI runs as root).

`lab_nodes` (session): a 3-node lab, brought up once (fast when it is already up) and shared by
every lab test, including the later deploy tests. At session end the lab is brought down, unless
LAB_KEEP=1 (developers keep their lab). A test that cannot get a lab fails; nothing is skipped.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills  # noqa: E402
from lab.drills import log  # noqa: E402

NODES = ["node01", "node02", "node03"]


@pytest.fixture(scope="session")
def lab_nodes():
    try:
        lab.up(3)
    except BaseException:
        # a failed `up` must not leave anything half-made behind
        if os.environ.get("LAB_KEEP") != "1":
            lab.down()
        raise
    try:
        yield list(NODES)
    finally:
        if os.environ.get("LAB_KEEP") != "1":
            lab.down()


# --- the drills' fixtures (test_30, test_40, test_50) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(lab_nodes):
    """The whole stack deployed and the API stand-ins installed; the report healthy with every
    API listener's servers UP on every node."""
    run = drills.deploy()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    run = backends.install()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    ports = backends.ports()
    assert ports.get("keystone_internal") == 5000
    # Just installed, the stand-ins are UP in HAProxy after `rise` checks (2 x 2 s).
    drills.wait_for("every API listener's servers UP in every HAProxy", lambda: all(
        drills.haproxy_servers(node, name) == {n: "UP" for n in NODES} for node in NODES for name in ports),
        timeout=60, interval=1)
    report, waited = drills.wait_healthy(120)
    for node, facts in report["facts"].items():
        listeners = facts["haproxy_servers"]["listeners"]
        for name in ports:
            assert {s: v["status"] for s, v in listeners[name].items()} == {n: "UP" for n in NODES}, (node, name)
    log(f"deployed: healthy (after {waited:.1f}s); VIP on {report['vip_holders']}; "
        f"{len(ports)} API ports answered by every node")
    yield report
    drills.restore()


@pytest.fixture
def healthy(deployed):
    """A healthy lab before the drill; restored to healthy after it, also when it failed."""
    report = drills.verify_report()
    if not report.get("ok"):
        report = drills.restore()
    assert report["ok"], report.get("failures")
    yield report
    final = drills.restore()
    assert final["ok"], final.get("failures")
    assert final["vip_holders"] and len(final["vip_holders"]) == 1
