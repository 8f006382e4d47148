"""Lab tests run against real nodes on this machine (root needed; CI runs as root).

`lab_nodes` (session): a 3-node lab, brought up once (fast when it is already up) and shared by
every lab test, including the later deploy tests. At session end the lab is brought down, unless
LAB_KEEP=1 (developers keep their lab). A test that cannot get a lab fails; nothing is skipped.
"""

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills, sitemodel  # noqa: E402
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


# --- the drills' fixtures (test_30 ... test_80) ----------------------------------------------------------------------------------
#
# A drill that leaves the lab so that restore() cannot bring it back within its bound
# (drills.RESTORE_BOUND, a few minutes) fails with the cause, and the lab is marked broken: the
# next fixture rebuilds it (lab down with the node disks purged, up, deploy: about 6 min)
# instead of waiting out the same timeouts again. A rebuild that fails stops every later drill
# at once (pytest.fail), so `make test` ends soon with the first cause.

_lab = {"broken": None, "rebuild_failed": None}


def _stack_ready() -> tuple[dict, float]:
    """Every API listener's servers UP in every HAProxy, then the report healthy with them."""
    ports = backends.ports()
    # Just installed, the stand-ins are UP in HAProxy after `rise` checks (2 x 2 s).
    drills.wait_for("every API listener's servers UP in every HAProxy", lambda: all(
        drills.haproxy_servers(node, name) == {n: "UP" for n in NODES} for node in NODES for name in ports),
        timeout=60, interval=1)
    report, waited = drills.wait_healthy(120)
    for node, facts in report["facts"].items():
        listeners = facts["haproxy_servers"]["listeners"]
        for name in ports:
            assert {s: v["status"] for s, v in listeners[name].items()} == {n: "UP" for n in NODES}, (node, name)
    return report, waited


def _rebuild_if_broken() -> dict | None:
    """The lab rebuilt and deployed if a drill left it broken; its healthy report, else None."""
    if _lab["rebuild_failed"]:
        pytest.fail(f"the lab could not be rebuilt earlier in this run: {_lab['rebuild_failed']}")
    if not _lab["broken"]:
        return None
    log(f"the lab is broken ({_lab['broken'][:300]}): rebuilding it")
    _lab["restored"] = None
    try:
        drills.rebuild()
        report, _ = _stack_ready()
    except BaseException as exc:
        _lab["rebuild_failed"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        raise
    _lab["broken"] = None
    return report


def _restore() -> dict:
    """drills.restore(); if it gives up, the lab is marked broken (rebuilt by the next fixture)
    and the error, with its cause, fails the test or module it ends."""
    try:
        return drills.restore()
    except drills.LabUnrecoverable as exc:
        _lab["broken"] = str(exc)
        raise


@pytest.fixture(scope="module")
def deployed(lab_nodes):
    """The whole stack deployed and the API stand-ins installed; the report healthy with every
    API listener's servers UP on every node."""
    _lab["restored"] = None  # the previous module's last report: this deploy may change the lab
    _rebuild_if_broken()
    run = drills.deploy()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    run = backends.install()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    ports = backends.ports()
    assert ports and all(ports[name] == sitemodel.backend_port(name) for name in ports), ports
    report, waited = _stack_ready()
    log(f"deployed: healthy (after {waited:.1f}s); VIP on {report['vip_holders']}; "
        f"{len(ports)} API ports answered by every node")
    yield report
    if not _lab["broken"]:
        _restore()


@pytest.fixture(autouse=True)
def _last_test(request):
    """Records which test ran last (read by `healthy`)."""
    yield
    _lab["last_test"] = request.node.nodeid


@pytest.fixture
def healthy(deployed, request):
    """A healthy lab before the drill (rebuilt first if an earlier drill left it broken);
    restored to healthy after it, also when it failed. The report the previous test's restore
    ended with is used again when that test ran just before, under a minute ago, in the same
    module (`deployed` and a rebuild forget it: their deploys may change the lab): one verify
    run (about 5 s) less per drill."""
    fresh = _lab.get("restored")
    if fresh and fresh[0] == _lab.get("last_test") and time.monotonic() - fresh[1] < 60 and not _lab["broken"]:
        report = fresh[2]
    else:
        report = _rebuild_if_broken() or drills.verify_report()
    _lab["restored"] = None
    if not report.get("ok"):
        try:
            report = _restore()
        except drills.LabUnrecoverable:
            report = _rebuild_if_broken()
    assert report["ok"], report.get("failures")
    yield report
    final = _restore()
    assert final["ok"], final.get("failures")
    assert final["vip_holders"] and len(final["vip_holders"]) == 1
    _lab["restored"] = (request.node.nodeid, time.monotonic(), final)
