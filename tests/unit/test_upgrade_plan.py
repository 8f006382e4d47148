"""The upgrade plan as a table: every controller's installed and offered versions, the pins
and the feature flags in; the changes and turns, or the refusal (with its supported path), out.
operations.upgrade_plan.plan() is pure: the deploy announces what it returns."""

import re

import pytest

import unitkit  # noqa: F401
from facts.packages import PackageVersions
from facts.rabbitmq import RabbitmqFeatureFlags
from operations.upgrade_plan import UpgradeRefused, plan, rabbitmq_path

ORDER = ["node01", "node02", "node03"]
M18, M19 = "1:10.11.18-0+deb12u1", "1:10.11.19-0+deb12u1"
M114, M118, M106 = "1:11.4.5-1", "1:11.8.3-1", "1:10.6.21-0+deb12u1"
H3, H4 = "2.6.12-1+deb12u3", "2.6.12-1+deb12u4"
ON = {"quorum_queue": {"state": "enabled", "stability": "required"},
      "stream_queue": {"state": "enabled", "stability": "stable"},
      "khepri_db": {"state": "disabled", "stability": "experimental"}}
OFF = {**ON, "stream_queue": {"state": "disabled", "stability": "stable"}}
KHEPRI_STABLE = {**ON, "khepri_db": {"state": "disabled", "stability": "stable"}}


def node(installed: dict, offered: dict | None = None, unfinished=None):
    """A PackageVersions fact: apt offers the installed versions and `offered`."""
    avail = {p: [v] for p, v in installed.items() if v}
    for p, vs in (offered or {}).items():
        avail.setdefault(p, []).extend(vs)
    return {"installed": installed, "available": avail, "unfinished": unfinished or {}, "error": None}


def every(installed, offered=None):
    return {n: node(installed, offered) for n in ORDER}


MARIADB = lambda v: {"mariadb-server": v, "mariadb-client": v, "mariadb-backup": v}  # noqa: E731
RMQ = lambda v: {"rabbitmq-server": v}  # noqa: E731

# (case, versions, pins, holder, flags, expected): expected is {node: [change strings]} with the
# turns, or a regex the refusal must match.
CASES = [
    ("nothing pinned: nothing planned", every(MARIADB(M18)), {}, None, None, ({}, ())),
    ("pinned at the installed version: nothing planned", every(MARIADB(M18)), MARIADB(M18), None, None, ({}, ())),
    ("same version spelled with epoch 0: nothing planned", every({"haproxy": "2.6.12-1"}), {"haproxy": "0:2.6.12-1"},
     None, None, ({}, ())),
    ("a patch release: rolling, the writer last", every(MARIADB(M18), MARIADB([M19])), {"mariadb-server": M19},
     None, None, ({n: [f"mariadb-server {M18} → {M19}, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("the VIP holder after the writer", every({"haproxy": H3}, {"haproxy": [H4]}), {"haproxy": H4}, "node02", None,
     ({n: [f"haproxy {H3} → {H4}, rolling"] for n in ORDER}, ("node03", "node01", "node02"))),
    ("the writer holds the VIP: last once", every({"haproxy": H3}, {"haproxy": [H4]}), {"haproxy": H4}, "node01", None,
     ({n: [f"haproxy {H3} → {H4}, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("an interrupted roll: only the nodes behind", {"node01": node({"haproxy": H3}, {"haproxy": [H4]}),
     "node02": node({"haproxy": H4}), "node03": node({"haproxy": H3}, {"haproxy": [H4]})}, {"haproxy": H4}, None, None,
     ({"node01": [f"haproxy {H3} → {H4}, rolling"], "node03": [f"haproxy {H3} → {H4}, rolling"]}, ("node03", "node01"))),
    ("not installed: installed at the pin", every({"memcached": None}, {"memcached": ["1.6.18-1"]}), {"memcached": "1.6.18-1"},
     None, None, ({n: ["memcached (not installed) → 1.6.18-1, install"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("a node unread: the others planned", {"node01": node({"haproxy": H3}, {"haproxy": [H4]}), "node02": None,
     "node03": node({"haproxy": H3}, {"haproxy": [H4]})}, {"haproxy": H4}, None, None,
     ({"node01": [f"haproxy {H3} → {H4}, rolling"], "node03": [f"haproxy {H3} → {H4}, rolling"]}, ("node03", "node01"))),
    # --- MariaDB majors ---
    ("MariaDB 10.11 → 11.4, adjacent: rolling", every(MARIADB(M18), MARIADB([M114])), MARIADB(M114), None, None,
     ({n: [f"mariadb-backup {M18} → {M114}, rolling", f"mariadb-client {M18} → {M114}, rolling",
           f"mariadb-server {M18} → {M114}, rolling (then mariadb-upgrade)"] for n in ORDER},
      ("node02", "node03", "node01"))),
    ("MariaDB 10.6 → 10.11, adjacent: rolling", every({"mariadb-server": M106}, {"mariadb-server": [M18]}),
     {"mariadb-server": M18}, None, None,
     ({n: [f"mariadb-server {M106} → {M18}, rolling (then mariadb-upgrade)"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("MariaDB 11.4 → 11.8, the last adjacent pair: rolling", every({"mariadb-server": M114}, {"mariadb-server": [M118]}),
     {"mariadb-server": M118}, None, None,
     ({n: [f"mariadb-server {M114} → {M118}, rolling (then mariadb-upgrade)"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("MariaDB 11.8 → 12.0, past the known chain: refused", every({"mariadb-server": M118}, {"mariadb-server": ["1:12.0.2-1"]}),
     {"mariadb-server": "1:12.0.2-1"}, None, None, r"11\.8 → 12\.0 is not a supported rolling upgrade.*full-stop"),
    ("MariaDB 10.11 → 11.8 over a major: refused with the path", every({"mariadb-server": M18}, {"mariadb-server": [M118]}),
     {"mariadb-server": M118}, None, None, r"node01: mariadb-server .*jumps over a MariaDB major \(10\.11 → 11\.8\).*10\.11 → 11\.4 → 11\.8.*full-stop"),
    ("MariaDB 10.6 → 11.4 over a major: refused", every({"mariadb-server": M106}, {"mariadb-server": [M114]}),
     {"mariadb-server": M114}, None, None, r"10\.6 → 11\.4\).*\(10\.6 → 10\.11 → 11\.4\)"),  # the steps end at the pin
    ("MariaDB 10.5 → 10.6, outside the chain: refused", every({"mariadb-server": "1:10.5.26-0+deb11u2"},
     {"mariadb-server": [M106]}), {"mariadb-server": M106}, None, None, r"10\.5 → 10\.6 is not a supported rolling.*10\.6 → 10\.11 → 11\.4 → 11\.8"),
    # --- RabbitMQ minors and feature flags ---
    ("RabbitMQ 3.12 → 3.13, flags on: rolling", every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"), None,
     {n: ON for n in ORDER}, ({n: ["rabbitmq-server 3.12.13-1 → 3.13.7-1, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("RabbitMQ 3.13 → 4.0, flags on: rolling", every(RMQ("3.13.7-1"), RMQ(["4.0.5-6"])), RMQ("4.0.5-6"), None,
     {n: ON for n in ORDER}, ({n: ["rabbitmq-server 3.13.7-1 → 4.0.5-6, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("RabbitMQ 4.0 → 4.1, flags on: rolling", every(RMQ("4.0.5-6"), RMQ(["4.1.2-1"])), RMQ("4.1.2-1"), None,
     {n: ON for n in ORDER}, ({n: ["rabbitmq-server 4.0.5-6 → 4.1.2-1, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("RabbitMQ 3.13 → 4.1 over 4.0: refused", every(RMQ("3.13.7-1"), RMQ(["4.1.2-1"])), RMQ("4.1.2-1"), None,
     {n: ON for n in ORDER}, r"3\.13 → 4\.0 → 4\.1"),
    ("RabbitMQ to a pre-release (3.13~beta1): refused", every(RMQ("3.12.13-1"), RMQ(["3.13~beta1-1"])), RMQ("3.13~beta1-1"),
     None, {n: ON for n in ORDER}, r"3\.13~beta1-1: not a RabbitMQ version of digits"),
    ("RabbitMQ 3.10 → 4.0 over minors: refused with the path", every(RMQ("3.10.8-1.1"), RMQ(["4.0.5-6"])), RMQ("4.0.5-6"),
     None, {n: ON for n in ORDER}, r"jumps over a RabbitMQ minor.*3\.10 → 3\.11 → 3\.12 → 3\.13 → 4\.0"),
    ("RabbitMQ 3.11 → 3.13 over one minor: refused", every(RMQ("3.11.28-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"), None,
     {n: ON for n in ORDER}, r"3\.11 → 3\.12 → 3\.13"),
    ("RabbitMQ 3.12 → 4.0 over 3.13: refused", every(RMQ("3.12.13-1"), RMQ(["4.0.5-6"])), RMQ("4.0.5-6"), None,
     {n: ON for n in ORDER}, r"3\.12 → 3\.13 → 4\.0"),
    ("RabbitMQ minor with a stable flag disabled: refused", every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"),
     None, {"node01": ON, "node02": OFF, "node03": ON}, r"stable feature flags disabled \(stream_queue\).*enable_feature_flag all"),
    ("RabbitMQ minor, a disabled flag stable on the newer nodes (experimental on node01): refused",
     every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"), None, {"node01": ON, "node02": KHEPRI_STABLE,
                                                                      "node03": KHEPRI_STABLE},
     r"stable feature flags disabled \(khepri_db\)"),
    ("RabbitMQ minor, a disabled flag stable on node01 only (experimental on the others, read after it): refused",
     every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"), None, {"node01": KHEPRI_STABLE, "node02": ON,
                                                                      "node03": ON},
     r"stable feature flags disabled \(khepri_db\)"),
    ("RabbitMQ minor, flags unknown: refused", every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"),
     None, {n: None for n in ORDER}, r"feature flags are unknown"),
    ("RabbitMQ patch with a stable flag disabled: rolling (flags gate minors)", every(RMQ("3.13.6-1"), RMQ(["3.13.7-1"])),
     RMQ("3.13.7-1"), None, {n: OFF for n in ORDER},
     ({n: ["rabbitmq-server 3.13.6-1 → 3.13.7-1, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    ("an experimental flag disabled does not stop a minor", every(RMQ("3.12.13-1"), RMQ(["3.13.7-1"])), RMQ("3.13.7-1"),
     None, {n: ON for n in ORDER}, ({n: ["rabbitmq-server 3.12.13-1 → 3.13.7-1, rolling"] for n in ORDER}, ("node02", "node03", "node01"))),
    # --- downgrades, versions apt does not offer, half-done packages ---
    ("a downgrade: refused", every({"haproxy": H4}, {"haproxy": [H3]}), {"haproxy": H3}, None, None,
     r"node01: haproxy 2\.6\.12-1\+deb12u4 → 2\.6\.12-1\+deb12u3 is a downgrade.*pin 2\.6\.12-1\+deb12u4 or newer"),
    ("a downgrade by a tilde: refused", every({"haproxy": "2.6.12-1"}, {"haproxy": ["2.6.12~rc1-1"]}), {"haproxy": "2.6.12~rc1-1"},
     None, None, r"is a downgrade"),
    ("a downgrade on one node only: refused, none planned", {"node01": node({"haproxy": H3}, {"haproxy": [H4]}),
     "node02": node({"haproxy": "2.6.12-1+deb12u5"}, {"haproxy": [H4]}), "node03": node({"haproxy": H3}, {"haproxy": [H4]})},
     {"haproxy": H4}, None, None, r"^node02: haproxy .* is a downgrade[^\n]*$"),
    ("a version apt does not offer: refused", every({"haproxy": H3}), {"haproxy": H4}, None, None,
     r"node01: haproxy 2\.6\.12-1\+deb12u4 is not offered by apt on node01 \(offered: 2\.6\.12-1\+deb12u3\).*apt-get update"),
    ("not installed and not offered: refused", every({"memcached": None}), {"memcached": "1.6.18-1"}, None, None,
     r"not offered by apt on node01 \(offered: none\)"),
    ("a half-installed package: refused", {n: node({"haproxy": None}, {"haproxy": [H4]}, {"haproxy": "iU"}) for n in ORDER},
     {"haproxy": H4}, None, None, r"half-installed \(dpkg status 'iU'\).*dpkg --configure -a"),
]


@pytest.mark.parametrize("case,versions,pins,holder,flags,expected", CASES, ids=[c[0] for c in CASES])
def test_plan(case, versions, pins, holder, flags, expected):
    if isinstance(expected, str):
        with pytest.raises(UpgradeRefused) as refused:
            plan(versions, pins, ORDER, "node01", holder, flags)
        assert re.search(expected, str(refused.value), re.S | re.M), str(refused.value)
        return
    got = plan(versions, pins, ORDER, "node01", holder, flags)
    changes, turns = expected
    assert {n: [str(c) for c in got.of(n)] for n in ORDER if got.of(n)} == changes
    assert got.turns == turns
    assert [c.node for c in got.changes] == sorted((c.node for c in got.changes), key=turns.index)


def test_every_refusal_is_said_at_once():
    versions = {"node01": node({"haproxy": H4}, {"haproxy": [H3]}), "node02": node({"haproxy": H3}),
                "node03": node({"haproxy": H3}, {"haproxy": [H4]})}
    with pytest.raises(UpgradeRefused) as refused:
        plan(versions, {"haproxy": H3, "memcached": "1.6.18-1"}, ORDER, "node01")
    lines = str(refused.value).splitlines()
    assert any(line.startswith("node01: haproxy") and "downgrade" in line for line in lines)
    assert sum("memcached 1.6.18-1 is not offered" in line for line in lines) == 3


def test_the_blast_radius_line():
    got = plan(every({"haproxy": H3, **MARIADB(M18)}, {"haproxy": [H4], **MARIADB([M19])}),
               {"haproxy": H4, **MARIADB(M19)}, ORDER, "node01")
    assert got.line("node02").startswith(f"haproxy {H3} → {H4}, rolling; mariadb-backup {M18} → {M19}, rolling")
    assert got.line("node02").count("rolling") == 4


def test_a_turn_is_its_controllers_rolling_changes():
    """A turn upgrades its own controller's packages; a package not yet installed is its component's."""
    got = plan(every({"haproxy": H3, "memcached": None}, {"haproxy": [H4], "memcached": ["1.6.18-1"]}),
               {"haproxy": H4, "memcached": "1.6.18-1"}, ORDER, "node01")
    for n in ORDER:
        assert [(c.node, c.package) for c in got.rolling(n)] == [(n, "haproxy")]
        assert [(c.node, c.package, c.how) for c in got.of(n)] == [(n, "haproxy", "rolling"), (n, "memcached", "install")]
        assert got.turn_line(n) == f"haproxy {H3} → {H4}, rolling (drain, stop haproxy, upgrade, start, back)"


def test_rabbitmq_path():
    assert rabbitmq_path((3, 12), (3, 13)) == [(3, 12), (3, 13)]
    assert rabbitmq_path((3, 13), (4, 0)) == [(3, 13), (4, 0)]
    assert rabbitmq_path((3, 10), (4, 0)) == [(3, 10), (3, 11), (3, 12), (3, 13), (4, 0)]
    assert rabbitmq_path((4, 0), (4, 2)) == [(4, 0), (4, 1), (4, 2)]


def test_the_facts_feed_the_plan():
    """The plan's inputs as the facts parse them from the hosts' own answers."""
    versions = PackageVersions().process([
        "__dpkg\thaproxy\t2.6.12-1+deb12u3\tii ", "__dpkg\tmemcached\t1.6.18-1\trc ", "__dpkg_rc=1",
        f"   haproxy | {H4} | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages",
        f"   haproxy | {H3} | http://deb.debian.org/debian bookworm/main amd64 Packages",
        f"   haproxy | {H3} | http://deb.debian.org/debian bookworm/main Sources", "", "__rc=0"])
    assert versions == {"installed": {"haproxy": H3, "memcached": None}, "available": {"haproxy": [H4, H3]},
                        "unfinished": {}, "pending": False, "error": None}
    assert PackageVersions().process(["__upgrade_pending=1", "__dpkg_rc=0", "", "__rc=0"])["pending"] is True
    assert PackageVersions().process(["__upgrade_pending=", "__dpkg_rc=0", "", "__rc=0"])["pending"] is False
    flags = RabbitmqFeatureFlags().process(["classic_mirrored_queue_version\tenabled\tstable",
                                            "khepri_db\tdisabled\texperimental", "", "__rc=0"])
    assert flags["flags"]["khepri_db"] == {"state": "disabled", "stability": "experimental"} and flags["error"] is None
    got = plan({n: versions for n in ORDER}, {"haproxy": H4}, ORDER, "node01", "node03")
    assert got.turns == ("node02", "node01", "node03")
    timed_out = PackageVersions().process(["__dpkg_rc=124", f"   haproxy | {H4} | x Packages", "", "__rc=0"])
    assert timed_out["error"] == "dpkg-query: exit status 124" and timed_out["installed"] == {}


# A controller whose turn an earlier run left unfinished (its marker: PackageVersions "pending"),
# and controllers in maintenance: (case, versions, pins, away, expected turns or a refusal's regex).
def pending(fact):
    return {**fact, "pending": True}


AWAY_CASES = [
    ("a marker left on node02, nothing left to install: node02 has a turn, first",
     {"node01": node({"haproxy": H3}, {"haproxy": [H4]}), "node02": pending(node({"haproxy": H4})),
      "node03": node({"haproxy": H3}, {"haproxy": [H4]})}, {"haproxy": H4}, frozenset(), ("node02", "node03", "node01")),
    ("a marker left on the writer only: its turn alone", {"node01": pending(node({"haproxy": H4})),
     "node02": node({"haproxy": H4}), "node03": node({"haproxy": H4})}, {"haproxy": H4}, frozenset(), ("node01",)),
    ("a rolling upgrade while node03 is in maintenance: refused", every({"haproxy": H3}, {"haproxy": [H4]}),
     {"haproxy": H4}, frozenset({"node03"}), r"node01, node02, node03: a rolling upgrade while node03 is in maintenance.*"
                                             r"make maintenance-back NODE=node03"),
    ("two in maintenance: refused, the first of them named to bring back", every({"haproxy": H3}, {"haproxy": [H4]}),
     {"haproxy": H4}, frozenset({"node03", "node02"}), r"while node02, node03 are in maintenance.*NODE=node02\)"),
    ("a marker left while node03 is in maintenance: refused", {"node01": node({"haproxy": H4}),
     "node02": pending(node({"haproxy": H4})), "node03": node({"haproxy": H4})}, {"haproxy": H4}, frozenset({"node03"}),
     r"^node02: a rolling upgrade while node03 is in maintenance"),
    ("only installs while node03 is in maintenance: planned (its component installs them)", every({"memcached": None},
     {"memcached": ["1.6.18-1"]}), {"memcached": "1.6.18-1"}, frozenset({"node03"}), ("node02", "node03", "node01")),
    ("nothing to do while node03 is in maintenance: no turn", every({"haproxy": H4}), {"haproxy": H4},
     frozenset({"node03"}), ()),
]


@pytest.mark.parametrize("case,versions,pins,away,expected", AWAY_CASES, ids=[c[0] for c in AWAY_CASES])
def test_pending_and_maintenance(case, versions, pins, away, expected):
    if isinstance(expected, str):
        with pytest.raises(UpgradeRefused) as refused:
            plan(versions, pins, ORDER, "node01", away=away)
        assert re.search(expected, str(refused.value), re.S | re.M), str(refused.value)
        return
    got = plan(versions, pins, ORDER, "node01", away=away)
    assert got.turns == expected
    assert got.pending == tuple(n for n in ORDER if (versions[n] or {}).get("pending"))
    for n in got.pending:
        assert got.turn_line(n).startswith("finish the upgrade turn an earlier run left")


# Every refusal the plan can give, by a phrase of its message: each must be a row of a table.
REFUSALS = ("is in maintenance", "is a downgrade", "is not offered by apt", "jumps over a MariaDB major", "is not a supported rolling upgrade",
            "jumps over a RabbitMQ minor", "stable feature flags disabled", "feature flags are unknown", "is half-installed",
            "not a RabbitMQ version of digits")


def test_every_refusal_is_a_row_of_the_table():
    said = []
    for _, versions, pins, holder, flags, expected in CASES:
        if isinstance(expected, str):
            with pytest.raises(UpgradeRefused) as refused:
                plan(versions, pins, ORDER, "node01", holder, flags)
            said.append(str(refused.value))
    for _, versions, pins, away, expected in AWAY_CASES:
        if isinstance(expected, str):
            with pytest.raises(UpgradeRefused) as refused:
                plan(versions, pins, ORDER, "node01", away=away)
            said.append(str(refused.value))
    missing = [phrase for phrase in REFUSALS if not any(phrase in text for text in said)]
    assert not missing, missing
