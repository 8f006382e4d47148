"""RabbitMQ's decisions as a table (operations/rabbitmq_plan.py): every controller's state in,
one plan out; then one controller's steps from the plan and what changes on it. Each row is a
situation; the expected plan is written from the rules in the module's docstring, not pasted
from what the code printed."""

import re

import pytest

import opkit
from facts.rabbitmq import RabbitmqCluster
from operations.rabbitmq_plan import Plan, RabbitmqStateError, majority, plan, steps

ORDER = ["node01", "node02", "node03"]
ADDR = {f"node0{i}": f"10.77.0.1{i}" for i in range(1, 6)}


def members(names):
    return [f"rabbit@{n}" for n in names]


def up(names=ORDER):
    """Broker running, clustered with `names`."""
    return {"installed": True, "running": True, "broker": True, "nodes": members(names)}


def stuck(reaches=None, names=ORDER):
    """Unit active, broker not running; `reaches`: the peers it reached (None: not probed)."""
    st = {"installed": True, "running": True, "broker": False, "nodes": members(names)}
    if reaches is not None:
        st["reaches"] = [ADDR[n] for n in reaches]
    return st


def down(names=ORDER):
    return {"installed": True, "running": False, "broker": False, "nodes": members(names)}


def alone(name):
    """The package's standalone broker on a new controller."""
    return {"installed": True, "running": True, "broker": True, "nodes": [f"rabbit@{name}"]}


def views(records, running=ORDER, order=ORDER, **other):
    """Every controller's RabbitmqMembers: the cluster's partition `records` (the same on each,
    as GET /api/nodes gives them) and `running` seen by each; `other`: {node: its own fact}."""
    return {n: other.get(n, {"running_nodes": members(running), "partitions": list(records), "error": None}) for n in order}


# CI's soak (test_97): node02 cut off 20 s, then healed; every view whole, the records kept
OUTLIVED = ["rabbit@node02: rabbit@node01, rabbit@node03", "rabbit@node03: rabbit@node02"]

# The lab after node02 was cut off 20 s (docs/partitions.md): the views split, both sides recorded
SIDE13 = {"running_nodes": members(["node01", "node03"]), "error": None,
          "partitions": ["rabbit@node01: rabbit@node02", "rabbit@node02: rabbit@node01, rabbit@node03"]}
ALONE2 = {"running_nodes": members(["node02"]), "error": None,
          "partitions": ["rabbit@node02: rabbit@node01, rabbit@node03"]}

MISSING = {"installed": False, "running": False, "broker": False, "nodes": []}
N4, N5 = [f"node0{i}" for i in range(1, 5)], [f"node0{i}" for i in range(1, 6)]


# (case, states, options, expected): options are plan()'s keywords (away, partition_handling);
# the controllers are the states' keys in order. expected is a dict of Plan fields.
PLANS = [
    # --- the seed, joins and forget ---
    ("healthy cluster: nothing to do", {n: up() for n in ORDER}, {},
     {"seed": "node01", "stuck": set(), "paused": set(), "stopped": set(), "joins": (), "forget": (), "room": True}),
    ("new controllers, standalone brokers: the first is the seed, the others join in order",
     {n: alone(n) for n in ORDER}, {}, {"seed": "node01", "joins": ("node02", "node03")}),
    ("new controllers, not installed yet: the first is the seed, the others join",
     {n: MISSING for n in ORDER}, {}, {"seed": "node01", "joins": ("node02", "node03"), "stopped": set()}),
    ("the first controller new, node02 and node03 clustered: node02 is the seed, node01 joins",
     {"node01": alone("node01"), "node02": up(ORDER[1:]), "node03": up(ORDER[1:])}, {},
     {"seed": "node02", "joins": ("node01",)}),
    ("a stopped clustered first controller is not the seed: the first running clustered one is",
     {"node01": down(), "node02": up(), "node03": up()}, {}, {"seed": "node02", "joins": ()}),
    ("a controller added to a running cluster joins it", {**{n: up() for n in ORDER}, "node04": alone("node04")}, {},
     {"seed": "node01", "joins": ("node04",)}),
    ("a member the inventory no longer lists is forgotten on the seed", {n: up(N4) for n in ORDER}, {},
     {"seed": "node01", "forget": ("rabbit@node04",), "joins": ()}),
    ("a member name that is not a node name is never forgotten",
     {n: {**up(), "nodes": [*members(ORDER), "rabbit@-x;reboot"]} for n in ORDER}, {}, {"forget": ()}),
    ("a controller in maintenance does not join", {"node01": up(), "node02": alone("node02"), "node03": up()},
     {"away": {"node02"}}, {"joins": ()}),
    # --- stuck brokers: restarted together ---
    ("every broker stuck (app stopped everywhere, the CI end state): all restarted together",
     {n: stuck() for n in ORDER}, {}, {"stuck": set(ORDER), "paused": set()}),
    ("one stuck, it reaches both peers, a majority runs: stuck, restarted",
     {"node01": up(), "node02": up(), "node03": stuck(["node01", "node02"])}, {}, {"stuck": {"node03"}, "paused": set()}),
    ("one stuck, reaching exactly a majority (one peer of two): stuck, restarted",
     {"node01": up(), "node02": up(), "node03": stuck(["node01"])}, {}, {"stuck": {"node03"}, "paused": set()}),
    ("a stuck node in maintenance is left alone", {"node01": up(), "node02": stuck(), "node03": stuck()},
     {"away": {"node02"}}, {"stuck": {"node03"}}),
    ("two of four stuck, unreachable, two running (no majority): both stuck, restarted together",
     {"node01": up(N4), "node02": up(N4), "node03": stuck([], N4), "node04": stuck([], N4)}, {},
     {"stuck": {"node03", "node04"}, "paused": set()}),
    # --- paused by pause_minority: waited for, never restarted ---
    ("one stuck, it reaches no peer while a majority runs: paused, not restarted",
     {"node01": up(), "node02": up(), "node03": stuck([])}, {}, {"stuck": set(), "paused": {"node03"}, "joins": ()}),
    ("one stuck, not probed, a majority runs: cannot tell, taken for paused",
     {"node01": up(), "node02": up(), "node03": stuck()}, {}, {"stuck": set(), "paused": {"node03"}}),
    ("four controllers, three run, one reaches one peer (2 of 4, no majority): paused",
     {"node01": up(N4), "node02": up(N4), "node03": up(N4), "node04": stuck(["node01"], N4)}, {},
     {"paused": {"node04"}, "stuck": set()}),
    ("four controllers, three run, one reaches two peers (3 of 4): stuck, restarted",
     {"node01": up(N4), "node02": up(N4), "node03": up(N4), "node04": stuck(["node01", "node02"], N4)}, {},
     {"paused": set(), "stuck": {"node04"}}),
    ("a stuck node that reaches only itself (the fact probes every controller, itself too): paused",
     {"node01": up(), "node02": up(), "node03": stuck(["node03"])}, {}, {"paused": {"node03"}, "stuck": set()}),
    ("autoheal pauses no node: one stuck and cut off while a majority runs is restarted",
     {"node01": up(), "node02": up(), "node03": stuck([])}, {"partition_handling": "autoheal"},
     {"paused": set(), "stuck": {"node03"}}),
    ("the first controller paused (the writer cut off): not the seed, node02 is; nobody joins node01",
     {"node01": stuck([]), "node02": up(), "node03": up()}, {}, {"seed": "node02", "paused": {"node01"}, "joins": ()}),
    ("a paused node that recorded no cluster does not join",
     {"node01": up(), "node02": up(), "node03": stuck([], ["node03"])}, {}, {"paused": {"node03"}, "joins": ()}),
    # --- stopped brokers: started together ---
    ("two brokers stopped (after the two-nodes-down drill): started together",
     {"node01": up(), "node02": down(), "node03": down()}, {}, {"stopped": {"node02", "node03"}, "joins": ()}),
    ("a stopped broker in maintenance stays stopped", {"node01": up(), "node02": down(), "node03": down()},
     {"away": {"node02"}}, {"stopped": {"node03"}, "away": {"node02"}}),
    ("not installed is not stopped", {"node01": up(), "node02": up(), "node03": MISSING}, {},
     {"stopped": set(), "joins": ("node03",)}),
    ("an unreachable controller is neither stopped nor stuck", {"node01": up(), "node02": up(), "node03": None}, {},
     {"stopped": set(), "stuck": set(), "paused": set()}),
    # --- room for a rolling restart with controllers in maintenance ---
    ("three controllers, one in maintenance: 1 of 3 would run, no room", {n: up() for n in ORDER},
     {"away": {"node02"}}, {"left": 1, "room": False}),
    ("four controllers, one in maintenance: 2 of 4 would run, not a majority, no room", {n: up(N4) for n in N4},
     {"away": {"node02"}}, {"left": 2, "room": False}),
    ("five controllers, one in maintenance: 3 of 5 would run, exactly a majority: room", {n: up(N5) for n in N5},
     {"away": {"node02"}}, {"left": 3, "room": True}),
    ("five controllers, two in maintenance: 2 of 5, no room", {n: up(N5) for n in N5},
     {"away": {"node02", "node04"}}, {"left": 2, "room": False}),
    ("nobody in maintenance: room", {n: up(N4) for n in N4}, {}, {"room": True}),
    ("two controllers, nobody in maintenance: room (the rule is about maintenance only)",
     {n: up(ORDER[:2]) for n in ORDER[:2]}, {}, {"left": 1, "room": True}),
    # --- a partition that outlived the network's heal: its minority restarted, whole picture only ---
    ("a partition recorded after the heal (CI's soak): node02, the minority, restarted",
     {n: up() for n in ORDER}, {"members": views(OUTLIVED)}, {"heal": ("node02",)}),
    ("only the minority's own record kept: still named", {n: up() for n in ORDER},
     {"members": views(OUTLIVED[:1])}, {"heal": ("node02",)}),
    ("no partition recorded: nobody", {n: up() for n in ORDER}, {"members": views([])}, {"heal": ()}),
    ("no views read (a plan without them): nobody", {n: up() for n in ORDER}, {}, {"heal": ()}),
    ("the views split after the heal (the lab, node02 cut 20 s: it sees itself, node01 and node03 each "
     "other; each side records the other): node02, the rest of the majority side, restarted",
     {n: up() for n in ORDER}, {"members": views([], node01=SIDE13, node03=SIDE13, node02=ALONE2)}, {"heal": ("node02",)}),
    ("views split but no partition recorded (a broker merely starting): nobody", {n: up() for n in ORDER},
     {"members": views([], node01={**SIDE13, "partitions": []}, node03={**SIDE13, "partitions": []},
                       node02={**ALONE2, "partitions": []})}, {"heal": ()}),
    ("views split, the majority side disagreeing (node03 sees itself only): nobody", {n: up() for n in ORDER},
     {"members": views([], node01=SIDE13, node03={**ALONE2, "running_nodes": members(["node03"])}, node02=ALONE2)},
     {"heal": ()}),
    ("views split in two halves of four: no majority, nobody", {n: up(N4) for n in N4},
     {"members": views([], order=N4, **{n: {"running_nodes": members(side), "partitions": ["x"], "error": None}
                                        for side in (N4[:2], N4[2:]) for n in side})}, {"heal": ()}),
    ("one controller's view unreadable: a partial picture, nobody", {n: up() for n in ORDER},
     {"members": views(OUTLIVED, node03=None)}, {"heal": ()}),
    ("one controller's view an error: nobody", {n: up() for n in ORDER},
     {"members": views(OUTLIVED, node03={"running_nodes": [], "partitions": [], "error": "HTTP 401"})}, {"heal": ()}),
    ("the nodes report different records: nobody", {n: up() for n in ORDER},
     {"members": views(OUTLIVED, node01={"running_nodes": members(ORDER), "partitions": [], "error": None})}, {"heal": ()}),
    ("records naming no majority side (node01 and node02 each cut from the rest): nobody", {n: up() for n in ORDER},
     {"members": views(["rabbit@node01: rabbit@node02", "rabbit@node02: rabbit@node01"])}, {"heal": ()}),
    ("the minority's broker stopped: started with the others, not restarted for the records",
     {"node01": up(), "node02": down(), "node03": up()}, {"members": views(OUTLIVED)}, {"heal": (), "stopped": {"node02"}}),
    ("a stuck node besides: unstuck first, no restart for the records",
     {"node01": up(), "node02": up(), "node03": stuck(["node01", "node02"])},
     {"members": views(OUTLIVED)}, {"heal": (), "stuck": {"node03"}}),
    ("autoheal restarts a side itself: nobody", {n: up() for n in ORDER},
     {"members": views(OUTLIVED), "partition_handling": "autoheal"}, {"heal": ()}),
    ("a controller in maintenance: nobody", {n: up() for n in ORDER},
     {"members": views(OUTLIVED), "away": {"node01"}}, {"heal": ()}),
    ("five controllers, node04 and node05 the minority: both, in inventory order", {n: up(N5) for n in N5},
     {"members": views(["rabbit@node05: rabbit@node01, rabbit@node02, rabbit@node03",
                        "rabbit@node04: rabbit@node01, rabbit@node02, rabbit@node03",
                        "rabbit@node01: rabbit@node04, rabbit@node05"], running=N5, order=N5)},
     {"heal": ("node04", "node05")}),
]


def make(states, **options):
    order = list(states)
    return plan(states, order, {n: ADDR[n] for n in order}, **options)


@pytest.mark.parametrize("case,states,options,expected", PLANS, ids=[c[0] for c in PLANS])
def test_plan(case, states, options, expected):
    p = make(states, **options)
    for field, want in expected.items():
        got = getattr(p, field)
        assert (set(got) if isinstance(want, set) else got) == want, (field, p)


# (case, states, plan options, node, steps() keywords, expected): expected is a dict of Steps
# fields (others must be False/empty unless named), or a regex the refusal must match.
HEALTHY = {n: up() for n in ORDER}
STOPPED = {"node01": up(), "node02": down(), "node03": down()}
PAUSED = {"node01": up(), "node02": up(), "node03": stuck([])}
STEPS = [
    ("healthy, nothing changes: nothing to do", HEALTHY, {}, "node02", {"running": True}, {}),
    ("the seed makes the definitions right", HEALTHY, {}, "node01", {"running": True}, {"definitions": True}),
    ("the seed forgets a removed member", {n: up(N4) for n in ORDER}, {}, "node01", {"running": True},
     {"definitions": True, "forget": ("rabbit@node04",)}),
    ("a node that is not the seed forgets nothing", {n: up(N4) for n in ORDER}, {}, "node02", {"running": True}, {}),
    ("a new node joins", {n: alone(n) for n in ORDER}, {}, "node03", {"running": True}, {"join": True}),
    ("config changed: its turn of the rolling restart", HEALTHY, {}, "node02", {"running": True, "pending": True},
     {"restart": True}),
    ("epmd's listeners changed: its turn of the rolling restart", HEALTHY, {}, "node02", {"running": True, "rebind": True},
     {"restart": True}),
    ("cookie changed on a running node: stopped, then started together; no rolling restart",
     HEALTHY, {}, "node02", {"running": True, "new_cookie": True, "pending": True},
     {"cookie_stop": True, "cookie_start": True}),
    ("cookie changed on a stopped node: started with the others, not as a stopped broker",
     STOPPED, {}, "node02", {"running": False, "new_cookie": True}, {"cookie_stop": True, "cookie_start": True}),
    ("cookie changed in maintenance: stopped, not started", HEALTHY, {"away": {"node02"}}, "node02",
     {"running": True, "new_cookie": True, "pending": True}, {"cookie_stop": True}),
    ("stopped with a config change: started together, no rolling restart", STOPPED, {}, "node03",
     {"running": False, "pending": True}, {"start": True}),
    ("stuck: restarted first; a pending config restarts in its turn too", {**HEALTHY, "node03": stuck(["node01", "node02"])},
     {}, "node03", {"running": True, "pending": True}, {"unstick": True, "restart": True}),
    ("config changed, one of three in maintenance: the restart is deferred", HEALTHY, {"away": {"node02"}}, "node03",
     {"running": True, "pending": True}, {"deferred": True}),
    ("config changed, one of five in maintenance: exactly a majority left, restarted", {n: up(N5) for n in N5},
     {"away": {"node02"}}, "node03", {"running": True, "pending": True}, {"restart": True}),
    ("config changed on the node in maintenance: nothing (its start is maintenance back's)", HEALTHY,
     {"away": {"node02"}}, "node02", {"running": False, "pending": True}, {}),
    ("epmd changed in maintenance, broker stopped: its socket made again alone", HEALTHY, {"away": {"node02"}}, "node02",
     {"running": False, "rebind": True}, {"rebind_alone": True}),
    ("epmd changed in maintenance, broker still running (an interrupted out): left pending", HEALTHY,
     {"away": {"node02"}}, "node02", {"running": True, "rebind": True}, {}),
    ("epmd and cookie changed in maintenance, running: stopped for the cookie, socket made again",
     HEALTHY, {"away": {"node02"}}, "node02", {"running": True, "rebind": True, "new_cookie": True},
     {"cookie_stop": True, "rebind_alone": True}),
    ("paused: waited for, its pending restart not done", PAUSED, {}, "node03", {"running": True, "pending": True},
     {"wait": True}),
    ("paused, epmd changed: waited for, not restarted", PAUSED, {}, "node03", {"running": True, "rebind": True},
     {"wait": True}),
    ("the others restart in turn while one is paused", PAUSED, {}, "node02", {"running": True, "pending": True},
     {"restart": True}),
    ("the minority of a partition kept after the heal: restarted in its turn", HEALTHY,
     {"members": views(OUTLIVED)}, "node02", {"running": True}, {"heal": True}),
    ("the majority side of it: nothing", HEALTHY, {"members": views(OUTLIVED)}, "node03", {"running": True}, {}),
    ("the minority with a config change: its rolling restart clears the records", HEALTHY,
     {"members": views(OUTLIVED)}, "node02", {"running": True, "pending": True}, {"restart": True}),
    ("the minority while the cookie changes: stopped and started with the others", HEALTHY,
     {"members": views(OUTLIVED)}, "node02", {"running": True, "new_cookie": True},
     {"cookie_stop": True, "cookie_start": True}),
    ("paused while the cookie changes: refused, naming the node and the fix", PAUSED, {}, "node03",
     {"running": True, "new_cookie": True}, r"cookie changes while the broker of node03 is paused.*node03 unit active, "
     r"broker not running.*Restore the network"),
]

FALSE = {"unstick": False, "cookie_stop": False, "cookie_start": False, "start": False, "rebind_alone": False,
         "restart": False, "deferred": False, "wait": False, "join": False, "forget": (), "definitions": False,
         "heal": False}


@pytest.mark.parametrize("case,states,options,node,local,expected", STEPS, ids=[c[0] for c in STEPS])
def test_steps(case, states, options, node, local, expected):
    p = make(states, **options)
    if isinstance(expected, str):
        with pytest.raises(RabbitmqStateError) as err:
            steps(p, node, **local)
        assert re.search(expected, str(err.value)), str(err.value)
        return
    got = steps(p, node, **local)
    for field, want in {**FALSE, **expected}.items():
        assert getattr(got, field) == want, (field, got)


def test_the_tables_cover_every_condition():
    """Every condition of a broker and every run option appears in some row."""
    def kind(st):
        if st is None:
            return "unreachable"
        if not st["installed"]:
            return "not installed"
        if not st["running"]:
            return "stopped"
        if st["broker"]:
            return "running" if len(st["nodes"]) > 1 else "standalone"
        return "stuck, not probed" if "reaches" not in st else "stuck, probed"
    rows = [*PLANS, *((c, s, o, e) for c, s, o, _, _, e in STEPS)]
    assert {kind(st) for _, states, _, _ in rows for st in states.values()} == {
        "unreachable", "not installed", "stopped", "running", "standalone", "stuck, not probed", "stuck, probed"}
    assert {len(states) for _, states, _, _ in rows} >= {3, 4, 5}
    assert any(o.get("away") for _, _, o, _ in rows) and any(o.get("partition_handling") for _, _, o, _ in rows)
    local = {k for *_, kw, _ in STEPS for k, v in kw.items() if v and k != "running"}
    assert local == {"new_cookie", "pending", "rebind"}
    assert len(PLANS) + len(STEPS) >= 45


def test_majority():
    assert [majority(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]


def test_the_plan_is_frozen():
    p = make(HEALTHY)
    assert isinstance(p, Plan)
    with pytest.raises(AttributeError):
        p.seed = "node02"


def test_the_fact_probes_peers_only_for_a_stuck_broker():
    cmd = RabbitmqCluster().command(port=5672, peers=("10.77.0.11", "10.77.0.12"), dist_port=25672)
    assert "/dev/tcp/$p/25672" in cmd and "for p in 10.77.0.11 10.77.0.12;" in cmd
    # only when the unit is active and no AMQP listener: a healthy run pays nothing
    assert cmd.index("[ \"$a\" = running ] && [ -z \"$b\" ]") < cmd.index("for p in")
    assert "/dev/tcp" not in RabbitmqCluster().command(port=5672)
    out = ["installed", "running", "reach 10.77.0.11", "probed", "{[rabbit@node01,rabbit@node03],[]}.", "", "__end"]
    assert RabbitmqCluster().process(out)["reaches"] == ["10.77.0.11"]
    assert RabbitmqCluster().process(["installed", "running", "probed", "", "__end"])["reaches"] == []
    assert RabbitmqCluster().process(["installed", "running", "broker", "", "__end"])["reaches"] is None


def test_the_deploy_refuses_a_cookie_change_while_a_broker_is_paused_before_any_change(capsys):
    case = opkit.load_case(opkit.CASES / "rabbitmq" / "paused_broker.json")
    case["facts"]["*"]["Sha1File"] = {"/var/lib/rabbitmq/.erlang.cookie": "0" * 40}  # the cookie changes
    from operations.common import Refused

    with pytest.raises(Refused) as exc:  # pyinfra's CLI prints it once, with no traceback
        opkit.run(case)
    assert "cookie changes while the broker of node03 is paused" in str(exc.value)


def test_a_removed_member_is_forgotten_only_under_a_well_formed_name():
    """removed_members() reads the seed's own files: a member's host part is a DNS label of at
    most 63 characters (a letter or digit at each end); anything else is never forgotten."""
    from operations.rabbitmq_plan import removed_members

    longest, too_long = "a" + "b" * 61 + "c", "a" + "b" * 62 + "c"
    nodes = ["rabbit@node01", f"rabbit@{longest}", f"rabbit@{too_long}", "rabbit@-x", "rabbit@x;rm", "rabbit@n"]
    assert removed_members({"nodes": nodes}, ["node01"]) == [f"rabbit@{longest}", "rabbit@n"]


@pytest.mark.parametrize("said, code, restarted, message", [
    ("2 3", 0, True, ""),  # the record kept, every broker running: restarted
    ("0 3", 0, False, "no partition recorded any more: not restarted"),  # cleared meanwhile
    ("2 2", 1, False, "the broker said '2 2'"),  # a broker stopped meanwhile: refused
    ("", 1, False, "the broker said ''"),  # rabbitmqctl failed: refused
])
def test_the_heal_restart_is_checked_again_on_the_node(tmp_path, said, code, restarted, message):
    """operations/rabbitmq.py heal_command(), run by sh with a rabbitmqctl stand-in that says
    (records, running brokers) as the Erlang eval prints them."""
    import subprocess
    from operations.rabbitmq import heal_command
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "rabbitmqctl").write_text(f"#!/bin/sh\n[ -n '{said}' ] || exit 69\nprintf '%s\\nok\\n' '{said}'\n")
    (bin_ / "rabbitmqctl").chmod(0o755)
    mark = tmp_path / "restarted"
    run = subprocess.run(["sh", "-c", heal_command("node02", f"touch {mark}", ORDER)], capture_output=True, text=True,
                         env={"PATH": f"{bin_}:/usr/bin:/bin"})
    assert run.returncode == code, run
    assert mark.exists() == restarted
    assert message in run.stdout + run.stderr
