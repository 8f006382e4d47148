"""Galera's decisions as a table: every controller's condition in, the plan (or the refusal) out.

Each row is one picture the deploy can see before a run: nodes running in a Primary component
(Synced, Donor, Joiner), running outside it, stopped with or without a known position,
crashed, starting and not answering, unreachable (None), left out by --limit; one or two
Primary components; a history that diverged. operations.galera_plan.plan() is pure: the lab tests
run the same function against real nodes.
"""

import re

import pytest

from facts.galera import GaleraNode, sans_members
from facts.galera_rules import components, serving, strangers
from operations.galera import writes_to
from operations.galera_plan import (GaleraStateError, bootstrap_command, describe, plan, restart_order, restarts,
                                    unreached, waited, with_pending)

ORDER = ["node01", "node02", "node03"]
ADDR = {f"node0{i}": f"10.77.0.1{i}" for i in range(1, 6)}
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
OTHER = "b66c3c01-0000-11f1-9311-667e3b65f41b"


def primary(members=ORDER, state="Synced", committed=100, uuid=UUID):
    """Running in a Primary component whose members are `members`."""
    return {"installed": True, "active": True, "mysqld": "running", "query": "ok",
            "wsrep_cluster_status": "Primary", "wsrep_local_state_comment": state, "wsrep_ready": "ON",
            "wsrep_cluster_size": str(len(members)), "wsrep_last_committed": str(committed),
            "wsrep_cluster_state_uuid": uuid, "grastate_uuid": uuid, "grastate_seqno": "-1",
            "wsrep_incoming_addresses": ",".join(f"{ADDR[m]}:3306" for m in members)}


def reach_all(names, status="open"):
    """What each controller reached before the run: every controller's group port (PeerReach)."""
    return {n: {ADDR[m]: {4567: status, 25672: status} for m in names} for n in names}


def stopped(seqno=90, safe="0", uuid=UUID, recovered=None):
    st = {"installed": True, "active": False, "grastate_uuid": uuid, "grastate_seqno": str(seqno),
          "grastate_safe_to_bootstrap": safe}
    if recovered is not None:
        st["recovered_position"] = f"{uuid}:{recovered}"
    return st


def non_primary(committed=95):
    return {"installed": True, "active": True, "mysqld": "running", "query": "ok",
            "wsrep_cluster_status": "non-Primary", "wsrep_local_state_comment": "Initialized",
            "wsrep_last_committed": str(committed), "grastate_uuid": UUID, "grastate_seqno": "-1"}


WAITING = {"installed": True, "active": False, "mysqld": "running", "query": "failed",
           "grastate_uuid": UUID, "grastate_seqno": "-1"}
FRESH = {"installed": False}
NEW = {"installed": True, "active": True, "mysqld": "running", "query": "ok"}  # the package's standalone server


# (case, states, limited, repair, expected): expected is a dict of Plan fields, or a regex the
# refusal must match. An absent controller or None: could not be read.
CASES = [
    # --- a new cluster ---
    ("fresh controllers: bootstrap the first", {n: FRESH for n in ORDER}, (), False,
     {"mode": "bootstrap", "anchor": "node01", "position": (None, None), "size": 0}),
    ("fresh, packages' standalone servers running: bootstrap the first", {n: NEW for n in ORDER}, (), False,
     {"mode": "bootstrap", "anchor": "node01"}),
    ("fresh, one unreachable: no bootstrap", {"node01": FRESH, "node02": FRESH, "node03": None}, (), False,
     r"node03 did not answer.*not bootstrapping.*bring node03 back"),
    ("fresh, limited run: no bootstrap", {n: FRESH for n in ORDER}, ("node02", "node03"), False,
     r"limited to node01.*not bootstrapping.*without --limit"),
    ("a first run cut short after the bootstrap: the only copy", {"node01": stopped(3), "node02": FRESH, "node03": FRESH},
     (), False, {"mode": "bootstrap", "anchor": "node01", "position": (UUID, 3)}),
    ("a first run cut short, its only copy crashed (position unknown): still the only copy",
     {"node01": FRESH, "node02": stopped(-1), "node03": FRESH}, (), False,
     {"mode": "bootstrap", "anchor": "node02", "position": (UUID, None),
      "why": "bootstrap Galera from node02, the only node that holds Galera state"}),
    # --- a running cluster: never bootstrapped again ---
    ("healthy cluster: nothing to join", {n: primary() for n in ORDER}, (), False,
     {"mode": "join", "anchor": "node01", "synced": set(ORDER), "busy": set(), "repair": set(), "size": 3}),
    ("node01 stopped, the others Primary: node01 joins", {"node01": stopped(), "node02": primary(ORDER[1:]),
     "node03": primary(ORDER[1:])}, (), False, {"mode": "join", "anchor": "node02", "synced": {"node02", "node03"}, "size": 2}),
    ("--limit node03, stopped while the others are Primary: it joins, never bootstraps",
     {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": stopped()}, ("node01", "node02"), False,
     {"mode": "join", "anchor": "node01", "synced": {"node01", "node02"}}),
    ("--limit node03, crashed (no position) while the others are Primary: it joins",
     {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": stopped(-1)}, ("node01", "node02"), False,
     {"mode": "join", "anchor": "node01"}),
    ("node03 unreachable, the others Primary: join (node03 untouched)",
     {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": None}, (), False,
     {"mode": "join", "anchor": "node01", "synced": {"node01", "node02"}}),
    ("a Donor is waited for, never restarted", {"node01": primary(), "node02": primary(state="Donor/Desynced"),
     "node03": primary(state="Joiner")}, (), False, {"mode": "join", "synced": {"node01"}, "busy": {"node02", "node03"}}),
    ("a node in a state transfer, not answering, is waited for", {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]),
     "node03": dict(WAITING, active=True)}, (), False, {"mode": "join", "busy": {"node03"}}),
    ("a node running outside the Primary component rejoins", {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]),
     "node03": non_primary()}, (), False, {"mode": "join", "synced": {"node01", "node02"}, "busy": set()}),
    ("a new controller joins a running cluster", {**{n: primary() for n in ORDER}, "node04": FRESH}, (), False,
     {"mode": "join", "synced": set(ORDER)}),
    # --- a full outage: the most advanced node, from the whole picture only ---
    ("clean full stop: the most advanced (also safe) node", {"node01": stopped(7), "node02": stopped(8),
     "node03": stopped(9, safe="1")}, (), False, {"mode": "bootstrap", "anchor": "node03", "position": (UUID, 9)}),
    ("safe_to_bootstrap never beats a more advanced position", {"node01": stopped(7, safe="1"), "node02": stopped(9),
     "node03": stopped(8)}, (), False, {"mode": "bootstrap", "anchor": "node02"}),
    ("crash of every node: positions from galera_recovery", {n: stopped(-1, recovered=p) for n, p in zip(ORDER, (60, 62, 61))},
     (), False, {"mode": "bootstrap", "anchor": "node02", "position": (UUID, 62)}),
    # Every node running without a Primary: none may bootstrap while the others listen on the group
    # port (bootstrap_command refuses, and the next run planned the same: the soak's loop).
    ("every node running without a Primary: recover (stop them, then the most advanced)",
     {n: non_primary(c) for n, c in zip(ORDER, (7, 7, 9))}, (), False,
     {"mode": "recover", "anchor": "", "stop": set(ORDER)}),
    ("the soak's: gcomm crashed on node01 (Disconnected, most advanced), node02/node03 non-Primary: recover",
     {"node01": dict(non_primary(324500), wsrep_cluster_status="Disconnected"), "node02": non_primary(324497),
      "node03": non_primary(324497)}, (), False,
     {"mode": "recover", "stop": set(ORDER), "why": re.compile(r"runs outside any \(last committed: node01 324500")}),
    ("one node running outside any Primary, the others stopped ahead of it: it is stopped first",
     {"node01": stopped(12), "node02": non_primary(10), "node03": stopped(11)}, (), False,
     {"mode": "recover", "stop": {"node02"}}),
    ("servers waiting at start beside one running outside a Primary: all of them stopped",
     {"node01": WAITING, "node02": non_primary(10), "node03": WAITING}, (), False,
     {"mode": "recover", "stop": set(ORDER)}),
    ("running outside any Primary, but one unreachable: refused (a Primary may run there)",
     {"node01": non_primary(12), "node02": non_primary(12), "node03": None}, (), False,
     r"node03 did not answer.*not bootstrapping"),
    ("a tie goes to the safe node", {"node01": stopped(40), "node02": stopped(40), "node03": stopped(40, safe="1")},
     (), False, {"anchor": "node03"}),
    ("a tie without a safe node goes to inventory order", {n: stopped(40) for n in ORDER}, (), False, {"anchor": "node01"}),
    ("full outage, one unreachable, even with a safe node: refused",
     {"node01": stopped(12), "node02": stopped(15, safe="1"), "node03": None}, (), False,
     r"node03 did not answer.*node01 mariadb stopped, last committed 12; node02 .* 15"),
    ("full outage, limited run: refused", {n: stopped(40) for n in ORDER}, ("node02", "node03"), False,
     r"limited to node01.*without --limit"),
    ("full outage, a position unknown: refused with the positions", {"node01": stopped(12), "node02": stopped(15),
     "node03": stopped(-1)}, (), False, r"node02 15, node03 \?.*galera_recovery printed none.*full-outage"),
    ("whole-site stop, mariadb waiting at start everywhere: recover (stop them all, then the most advanced)",
     {n: WAITING for n in ORDER}, (), False, {"mode": "recover", "anchor": "", "stop": set(ORDER), "synced": set()}),
    ("whole-site stop, two waiting, one stopped cleanly: recover, stopping the two",
     {"node01": WAITING, "node02": stopped(40), "node03": WAITING}, (), False,
     {"mode": "recover", "stop": {"node01", "node03"}}),
    ("whole-site stop, two waiting and a new controller without state: the new one is not stopped",
     {"node01": WAITING, "node02": WAITING, "node03": FRESH}, (), False, {"mode": "recover", "stop": {"node01", "node02"}}),
    ("whole-site stop, one waiting and a crashed node whose position could not be read: refused",
     {"node01": WAITING, "node02": stopped(-1), "node03": stopped(5)}, (), False,
     r"node01 is starting and waiting.*position of node02 could not be read"),
    ("whole-site stop, one unreachable: refused, even with the others waiting",
     {"node01": WAITING, "node02": WAITING, "node03": None}, (), False, r"node03 did not answer.*not bootstrapping"),
    ("every server running, its unit active, none answering (loaded, hung): refused, never stopped",
     {n: dict(WAITING, active=True) for n in ORDER}, (), False, r"a position could not be read"),
    ("two waiting at start, one active and not answering: refused (that one is not waiting)",
     {"node01": WAITING, "node02": WAITING, "node03": dict(WAITING, active=True)}, (), False,
     r"node01, node02 is starting and waiting.*position of node03 could not be read"),
    # A server active and not answering (loaded, hung) beside servers running outside any Primary
    # component is not "outside": its position is unknown (it may be the most advanced) and it is
    # not waiting at start, so it is never stopped; without its position nobody bootstraps.
    ("running outside any Primary, one active and not answering: refused, nobody stopped",
     {"node01": non_primary(10), "node02": non_primary(12), "node03": dict(WAITING, active=True)}, (), False,
     r"last committed: node01 10, node02 12, node03 \?.*a position could not be read"),
    ("one outside a Primary, one waiting at start, one active and not answering: refused, the last not stopped",
     {"node01": non_primary(10), "node02": WAITING, "node03": dict(WAITING, active=True)}, (), False,
     r"node02 is starting and waiting.*position of node03 could not be read"),
    ("whole-site stop, limited run: refused", {n: WAITING for n in ORDER}, ("node02", "node03"), False,
     r"limited to node01.*without --limit"),
    ("state of two different clusters: refused", {"node01": stopped(5), "node02": stopped(5), "node03": stopped(5, uuid=OTHER)},
     (), False, r"different clusters"),
    ("Primary components of two different clusters: refused", {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]),
     "node03": primary(["node03"], uuid=OTHER)}, (), False, r"different clusters"),
    # --- split brain and divergence ---
    ("split brain 2+1: refused, naming the switch and what the minority loses",
     {"node01": primary(ORDER[:2], committed=100), "node02": primary(ORDER[:2], committed=100),
      "node03": primary(["node03"], committed=104)}, (), False,
     r"split brain.*\{node01, node02\}.*\{node03\}.*node03 at 104 vs 100.*HA_GALERA_REPAIR=1"),
    ("split brain 2+1, with the switch: node03 repaired from the majority",
     {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": primary(["node03"], committed=104)},
     (), True, {"mode": "join", "anchor": "node01", "repair": {"node03"}, "synced": {"node01", "node02"}}),
    ("split brain 2+2+1: the two largest are equal, no majority, refused even with the switch",
     {"node01": primary(["node01", "node02"]), "node02": primary(["node01", "node02"]),
      "node03": primary(["node03", "node04"]), "node04": primary(["node03", "node04"]), "node05": primary(["node05"])},
     (), True, r"equal size"),
    ("split brain 2+2: no majority, refused even with the switch",
     {"node01": primary(["node01", "node02"]), "node02": primary(["node01", "node02"]),
      "node03": primary(["node03", "node04"]), "node04": primary(["node03", "node04"])}, (), True, r"equal size"),
    ("a stopped node ahead of the Primary component diverged: refused",
     {"node01": primary(ORDER[:2], committed=100), "node02": primary(ORDER[:2], committed=100), "node03": stopped(120)},
     (), False, r"diverged: node03.*\(100\).*HA_GALERA_REPAIR=1"),
    # the boundary of "ahead": at the Primary's last committed is a routine rejoin, one past it diverged
    ("a stopped node exactly at the Primary component's last committed rejoins: not diverged",
     {"node01": primary(ORDER[:2], committed=100), "node02": primary(ORDER[:2], committed=100), "node03": stopped(100)},
     (), False, {"mode": "join", "anchor": "node01", "repair": set(), "synced": {"node01", "node02"}}),
    ("a stopped node one transaction past the Primary component diverged: refused",
     {"node01": primary(ORDER[:2], committed=100), "node02": primary(ORDER[:2], committed=100), "node03": stopped(101)},
     (), False, r"diverged: node03 committed past the Primary component \(100\).*node03 at 101 vs 100"),
    ("a node that failed to rejoin after a split brain, with the switch: resynced",
     {"node01": primary(), "node02": primary(), "node03": non_primary(78)}, (), True,
     {"mode": "join", "repair": {"node03"}, "synced": {"node01", "node02"}}),
    ("with the switch, a node without state or not answering is not 'repaired'",
     {"node01": primary(), "node02": primary(), "node03": dict(WAITING, active=True), "node04": FRESH}, (), True,
     {"repair": set(), "busy": {"node03"}}),
    ("a diverged node, with the switch: repaired", {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]),
     "node03": stopped(120)}, (), True, {"mode": "join", "repair": {"node03"}}),
]


@pytest.mark.parametrize("case,states,limited,repair,expected", CASES, ids=[c[0] for c in CASES])
def test_plan(case, states, limited, repair, expected):
    order = sorted(states) if len(states) > 3 else ORDER
    reach = reach_all(order)  # every node reaches its peers: the partitions are CUT_CASES
    if isinstance(expected, str):
        with pytest.raises(GaleraStateError) as err:
            plan(states, order, {n: ADDR[n] for n in order}, limited=limited, repair=repair, reach=reach)
        assert re.search(expected, str(err.value)), str(err.value)
        return
    p = plan(states, order, {n: ADDR[n] for n in order}, limited=limited, repair=repair, reach=reach)
    for field, want in expected.items():
        got = getattr(p, field)
        if isinstance(want, re.Pattern):
            assert want.search(got), (field, p)
            continue
        assert (set(got) if isinstance(want, set) else got) == want, (field, p)


def test_the_table_covers_every_condition():
    """Every condition of a node appears in some row, so the table is the decision's spec."""
    def kinds(st):
        if st is None:
            return "unreachable"
        if st.get("wsrep_cluster_status") == "Primary":
            return "Primary " + st["wsrep_local_state_comment"].split("/")[0]
        if st.get("query") == "failed":
            return "not answering"
        if st.get("mysqld") == "running":
            return "running outside" if st.get("wsrep_cluster_status") else "standalone"
        if st.get("installed") is False:
            return "not installed"
        return "crashed" if st.get("grastate_seqno") == "-1" else "stopped"
    seen = {kinds(st) for _, states, *_ in CASES for st in states.values()}
    assert seen >= {"unreachable", "Primary Synced", "Primary Donor", "Primary Joiner", "not answering",
                    "running outside", "standalone", "not installed", "crashed", "stopped"}
    assert any(limited for _, _, limited, _, _ in CASES)
    assert len(CASES) >= 30


def test_a_member_removed_from_the_inventory_but_still_running_is_refused():
    members = "10.77.0.11:3306,10.77.0.12:3306,10.77.0.13:3306,10.77.0.14:3306"
    states = {n: primary() | {"wsrep_cluster_size": "4", "wsrep_incoming_addresses": members} for n in ORDER}
    addresses = {n: ADDR[n] for n in ORDER}
    assert strangers(states, addresses) == ["10.77.0.14"]
    with pytest.raises(GaleraStateError, match=r"does not list \(10.77.0.14\).*Stop mariadb"):
        plan(states, ORDER, addresses)
    # node04 stopped: the cluster forgets it, the deploy goes on
    assert plan({n: primary() for n in ORDER}, ORDER, addresses).mode == "join"


def test_components_split_disjoint_member_lists_of_one_uuid():
    states = {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": primary(["node03"])}
    comps = components(states, ORDER, ADDR)
    assert [(c.nodes, set(c.members)) for c in comps] == [(("node01", "node02"), {"node01", "node02"}),
                                                          (("node03",), {"node03"})]
    assert len(components({n: primary() for n in ORDER}, ORDER, ADDR)) == 1
    assert serving(primary()) and not serving(primary(state="Donor/Desynced")) and not serving(None)


def test_bootstrap_command_checks_peers_and_position_on_the_host():
    cmd = bootstrap_command("node02", ["10.77.0.11", "10.77.0.13"], (UUID, 62))
    assert "for a in 10.77.0.11 10.77.0.13;" in cmd and "/dev/tcp/$a/4567" in cmd
    assert f"= {UUID}:62 ]" in cmd and "galera_recovery" in cmd
    # the checks come before anything that changes the node
    assert cmd.index("/dev/tcp") < cmd.index("systemctl stop mariadb") < cmd.index("$uuid:$seqno\" =")
    assert cmd.index("$uuid:$seqno\" =") < cmd.index("safe_to_bootstrap: 1") < cmd.index("galera_new_cluster")
    fresh = bootstrap_command("node01", ["10.77.0.12"], (None, None))
    assert "the plan saw none" in fresh and "galera_recovery" not in fresh


def test_galera_node_fact_reads_an_unanswered_query_as_unknown_not_as_a_state():
    fact = GaleraNode().process(["installed=yes", "active=yes", "mysqld=running", "query=failed",
                                 f"grastate_uuid={UUID}", "grastate_seqno=-1", "end=yes"])
    assert fact["query"] == "failed" and "wsrep_cluster_status" not in fact
    p = plan({"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": fact}, ORDER, ADDR,
             reach=reach_all(ORDER))
    assert p.busy == {"node03"}  # waited for, not restarted


def test_member_list_alone_does_not_count_as_a_config_change():
    old = "[galera]\nwsrep_on = ON\nwsrep_cluster_address = gcomm://10.0.0.1,10.0.0.2,10.0.0.3\nwsrep_node_name = a\n"
    assert sans_members(old) == sans_members(old.replace("10.0.0.3", "10.0.0.3,10.0.0.4"))
    assert sans_members(old) == sans_members(old + "wsrep_sst_donor = c,b,\n# a comment\n")
    assert sans_members(old) != sans_members(old.replace("wsrep_on = ON", "wsrep_on = OFF"))
    # the galera.cnf of before issue 24 held wsrep_sst_auth (now its own file): no restart for it
    assert sans_members(old) == sans_members(old + "wsrep_sst_auth = sst:secret\n")


def test_restarts_follow_each_nodes_own_config_and_pending_marker():
    states = {n: primary() | {"cnf_sans_members": "old"} for n in ORDER}
    states["node03"]["pending"] = "yes"
    p = plan(states, ORDER)
    assert restarts(p, states, {n: "old" for n in ORDER}) == {"node03"}
    assert restarts(p, states, {n: "new" for n in ORDER}) == set(ORDER)
    # a node outside the Primary component joins; it is not "restarted" as a member
    states["node02"] = stopped()
    assert restarts(plan(states, ORDER), states, {n: "new" for n in ORDER}) == {"node01", "node03"}


@pytest.mark.parametrize("node03, restarting, expected", [
    (primary(state="Donor/Desynced") | {"backup": "running"}, set(), []),  # its own backup: not waited for
    (primary(state="Donor/Desynced") | {"backup": "running"}, {"node03"}, ["node03"]),  # must restart: waited for
    (primary(state="Donor/Desynced"), set(), ["node03"]),  # an SST donor (no backup of its own): waited for
    (primary(state="Joiner") | {"backup": "running"}, set(), ["node03"]),  # joining: waited for
])
def test_a_member_its_own_backup_desyncs_is_waited_for_only_when_it_restarts(node03, restarting, expected):
    """A deploy while the backup node streams a backup (lab, stop 26: the run waited 300 s for it
    and failed it, with nothing to change): busy, but not waited for unless it must restart."""
    states = {"node01": primary(), "node02": primary(), "node03": node03}
    p = plan(states, ORDER)
    assert "node03" in p.busy
    assert waited(p, states, restarting) == expected


def test_restart_order_puts_the_writer_then_the_vip_holder_last():
    assert restart_order(ORDER, "node01", "node02") == ["node03", "node01", "node02"]
    assert restart_order(ORDER, "node01", "node01") == ["node02", "node03", "node01"]
    assert restart_order(ORDER, "node01", None) == ["node02", "node03", "node01"]
    assert restart_order(["node02", "node03"], "node01", "node03") == ["node02", "node03"]


def test_writes_moved_through_the_runtime_api():
    cmd = writes_to("mariadb", "node01", "/run/haproxy/admin.sock", "maint")
    # bounded (a hung socket must not hang a rolling restart), any answer an error
    assert "'set server mariadb/node01 state maint' | timeout 5 socat stdio UNIX-CONNECT:/run/haproxy/admin.sock" in cmd
    assert "haproxy: $out" in cmd
    assert cmd.startswith("if test -S /run/haproxy/admin.sock;")


def test_a_node_in_maintenance_bootstraps_only_when_it_is_the_only_way():
    addresses = {n: ADDR[n] for n in ORDER}
    tie = {n: stopped(40) for n in ORDER}
    assert plan(tie, ORDER, addresses, away={"node01"}).anchor == "node02"
    assert plan(tie, ORDER, addresses, away={"node01", "node02"}).anchor == "node03"
    # the most advanced still wins: bootstrapping another would lose its transactions
    ahead = {"node01": stopped(41), "node02": stopped(40), "node03": stopped(40, safe="1")}
    assert plan(ahead, ORDER, addresses, away={"node01"}).anchor == "node01"
    assert plan({n: FRESH for n in ORDER}, ORDER, addresses, away={"node01"}).anchor == "node02"


def test_without_the_switch_a_diverged_node_is_refused():
    # plan()'s default is no repair: nothing is set aside unless the operator asks
    states = {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2]), "node03": stopped(120)}
    with pytest.raises(GaleraStateError, match="HA_GALERA_REPAIR=1"):
        plan(states, ORDER, {n: ADDR[n] for n in ORDER})


def test_every_node_in_maintenance_still_bootstraps_the_first():
    assert plan({n: FRESH for n in ORDER}, ORDER, {n: ADDR[n] for n in ORDER}, away=set(ORDER)).anchor == "node01"


def test_describe_says_what_runs_without_galera():
    assert describe("node01", NEW) == "node01 mariadb running, without Galera"
    assert describe("node03", non_primary(95)) == "node03 mariadb running, non-Primary, last committed 95"


def test_with_pending_is_unknown_when_either_fact_is():
    node = stopped()
    assert with_pending(None, {"units": {}}) is None and with_pending(node, None) is None
    assert with_pending(node, {"units": None})["pending"] is False
    assert with_pending(node, {"units": {"mariadb": {"pending": True}}})["pending"] is True


# --- partitions: a node running outside the Primary component that does not reach its members --

MAJ = {"node01": primary(ORDER[:2]), "node02": primary(ORDER[:2])}


def cut_reach(node="node03", status="none", only=None):
    """Every node reaches every other, but `node` does not reach `only` (default: its peers)."""
    reach = reach_all(ORDER)
    for m in only or [n for n in ORDER if n != node]:
        reach[node][ADDR[m]] = {4567: status, 25672: status}
    return reach


# (case, states, reach, expected): expected Plan fields; cut_off and joins are the point.
CUT_CASES = [
    ("non-Primary, reaches both members: joins (restarted), as a stuck node",
     {**MAJ, "node03": non_primary()}, reach_all(ORDER), {"cut_off": set(), "busy": set(), "synced": {"node01", "node02"}}),
    ("non-Primary, reaches neither member: cut off, left alone",
     {**MAJ, "node03": non_primary()}, cut_reach(), {"cut_off": {"node03"}, "busy": set()}),
    ("non-Primary, reaches one member only: cut off (not confirmed)",
     {**MAJ, "node03": non_primary()}, cut_reach(only=["node01"]), {"cut_off": {"node03"}}),
    ("non-Primary, members refuse 4567 (a REJECT rule: a member listens there): cut off, left alone",
     {**MAJ, "node03": non_primary()}, cut_reach(status="refused"), {"cut_off": {"node03"}}),
    ("non-Primary, its reach was not read: cut off (never restarted on a guess)",
     {**MAJ, "node03": non_primary()}, {**reach_all(ORDER), "node03": None}, {"cut_off": {"node03"}}),
    ("not answering, cut off: left alone, not waited for",
     {**MAJ, "node03": dict(WAITING, active=True)}, cut_reach(), {"cut_off": {"node03"}, "busy": set()}),
    ("stopped, cut off: started (a stopped node does not rejoin by itself)",
     {**MAJ, "node03": stopped()}, cut_reach(), {"cut_off": set(), "synced": {"node01", "node02"}}),
    ("the writer cut off from the others (it is the minority now): left alone",
     {"node01": non_primary(), "node02": primary(ORDER[1:]), "node03": primary(ORDER[1:])},
     cut_reach("node01"), {"cut_off": {"node01"}, "anchor": "node02"}),
    ("a member that does not reach the cut-off node is no reason to leave it alone",
     {**MAJ, "node03": non_primary()}, {**reach_all(ORDER), "node01": {ADDR["node03"]: {4567: "none"}}},
     {"cut_off": set()}),
]


@pytest.mark.parametrize("case,states,reach,expected", CUT_CASES, ids=[c[0] for c in CUT_CASES])
def test_partition_plan(case, states, reach, expected):
    p = plan(states, ORDER, {n: ADDR[n] for n in ORDER}, reach=reach)
    for field, want in expected.items():
        got = getattr(p, field)
        assert (set(got) if isinstance(want, set) else got) == want, (field, p)
    # a cut-off node is neither joined nor restarted; the plan says why, naming what it misses
    joins = [n for n in ORDER if n != p.anchor and n not in p.synced and n not in p.busy and n not in p.cut_off]
    assert not set(joins) & p.cut_off
    assert not restarts(p, states, {n: "new" for n in ORDER}) & p.cut_off
    if p.cut_off:
        assert "left alone, never restarted" in p.cut_why and all(n in p.cut_why for n in p.cut_off), p.cut_why


def test_unreached_names_the_members_a_node_does_not_reach():
    members = {"node01", "node02"}
    assert unreached("node03", non_primary(), members, ADDR, cut_reach()) == ["node01", "node02"]
    assert unreached("node03", non_primary(), members, ADDR, cut_reach(only=["node02"])) == ["node02"]
    assert unreached("node03", non_primary(), members, ADDR, reach_all(ORDER)) == []
    assert unreached("node03", primary(), members, ADDR, cut_reach()) == []  # in a Primary component
    assert unreached("node03", stopped(), members, ADDR, cut_reach()) == []  # not running


def test_peer_reach_fact_reads_open_refused_and_none():
    from facts.host import PeerReach

    got = PeerReach().process(["R 10.77.0.11 4567 open", "R 10.77.0.12 4567 none", "R 10.77.0.12 25672 refused",
                               "end=yes"])
    assert got == {"reach": {"10.77.0.11": {4567: "open"}, "10.77.0.12": {4567: "none", 25672: "refused"}}, "error": None}
    assert PeerReach().process(["R 10.77.0.11 4567 open"])["error"]  # cut short


def test_a_position_of_zero_is_known_and_minus_one_is_not():
    """The boundaries of facts.galera_rules.position(): seqno 0 (a cluster with no commit yet) is
    a position; -1 (grastate.dat of a running or crashed node) is none, and the next source is read."""
    from facts.galera_rules import position

    assert position({"grastate_seqno": "0"}) == 0
    assert position({"wsrep_last_committed": "0", "grastate_seqno": "7"}) == 0
    assert position({"grastate_seqno": "-1"}) is None
    assert position({"grastate_seqno": "-1", "recovered_position": f"{UUID}:12"}) == 12


def test_members_leave_out_an_empty_or_auto_address():
    """wsrep_incoming_addresses lists AUTO for a member that has not said its address yet, and
    may end with a comma: neither is a member."""
    from facts.galera_rules import _members

    assert _members({"wsrep_incoming_addresses": "10.77.0.11:3306,AUTO,"}, {"10.77.0.11": "node01"}) == {"node01"}
    assert _members({"wsrep_incoming_addresses": ""}, {}) == frozenset()


def test_a_component_is_as_large_as_its_reported_size_or_its_members():
    """A Primary node whose member list is missing (the status cut short): the component's size
    is the cluster size it reports; without that either, its members (itself)."""
    bare = primary() | {"wsrep_incoming_addresses": ""}
    assert components({"node01": bare}, ORDER)[0].size == 3
    assert components({"node01": bare | {"wsrep_cluster_size": ""}}, ORDER)[0].size == 1


def test_a_diverged_node_cut_off_is_repaired_with_the_switch_not_left_alone():
    """A node that committed past the Primary component (diverged) and does not reach it: with
    the repair switch it is in `repair` (resynced by SST when it can), never also `cut_off`;
    the cut-off reasons name what each cut-off node misses (the port), or that its reach was not read."""
    diverged = {**MAJ, "node03": non_primary(committed=120)}
    p = plan(diverged, ORDER, {n: ADDR[n] for n in ORDER}, repair=True, reach=cut_reach())
    assert p.repair == {"node03"} and p.cut_off == frozenset()
    cut = plan({**MAJ, "node03": non_primary()}, ORDER, {n: ADDR[n] for n in ORDER}, reach=cut_reach())
    assert "does not reach node01, node02 on 4567" in cut.cut_why
    unread = plan({**MAJ, "node03": non_primary()}, ORDER, {n: ADDR[n] for n in ORDER},
                  reach={**reach_all(ORDER), "node03": None})
    assert "does not reach any member (its reach was not read)" in unread.cut_why
