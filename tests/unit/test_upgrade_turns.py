"""A rolling upgrade's turn, pure: upgrade_plan.turn_commands() as a table (what each turn stops,
installs, starts and checks, from its changes), its shell checked by bash -n, the apt step and
the IST check run here against stub commands, and the deploy's order of the turns (opkit)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

import unitkit  # noqa: F401
import opkit
from operations.upgrade_plan import (
    AWAY, IST_LINE, POLICY_RC, POLICY_TAG, SST_LINE, Change, install_command, start_commands, turn_commands, turn_steps, units_of,
)
from facts.host import Maintenance
from facts.packages import UPGRADE_MARKER

M18, M19, M114 = "1:10.11.18-0+deb12u1", "1:10.11.19-0+deb12u1", "1:11.4.5-1"
H3, H4 = "2.6.12-1+deb12u3", "2.6.12-1+deb12u4"
R12, R13 = "3.12.13-1", "3.13.7-1"


def wait(check, what, on_fail):
    return f"for i in $(seq 3); do ({check}) >/dev/null 2>&1 && exit 0; sleep 1; done; echo 'timed out: {what}' >&2; {on_fail}; exit 1"


def changes(node, **pkgs):
    """Rolling changes of `node`: package=(old, new[, then])."""
    return [Change(node, p.replace("_", "-"), v[0], v[1], "rolling", v[2] if len(v) > 2 else "") for p, v in sorted(pkgs.items())]


def commands(node, chs, pending=False, pinned=(), writer="node01"):
    return turn_commands(node, chs, pending=pending, pinned=list(pinned) or [c.package for c in chs], members=3,
                         writer=writer, vip_away=["VIP-AWAY"], vip_back="VIP-BACK", wait=wait, gcache="512M")


MARIADB = dict(mariadb_server=(M18, M19), mariadb_client=(M18, M19), mariadb_backup=(M18, M19))
# (case, node, changes, pending, expected): stopped (in order), started (in order), drain, quorum check,
# IST check, mariadb-upgrade runs, writes moved
TURNS = [
    ("haproxy alone: stop and start haproxy, nothing of Galera or RabbitMQ",
     "node02", changes("node02", haproxy=(H3, H4)), False,
     dict(stop=["haproxy"], start=["haproxy"], drain=False, quorum=False, ist=False, upgrade=0, moves=False)),
    ("mariadb + haproxy + memcached on node02: the proxy first, mariadb last to stop and first to start",
     "node02", changes("node02", haproxy=(H3, H4), memcached=("1.6.18-1", "1.6.18-1+deb12u1"), **MARIADB), False,
     dict(stop=["haproxy", "memcached", "mariadb"], start=["mariadb", "memcached", "haproxy"], drain=False, quorum=False,
          ist=True, upgrade=0, moves=False)),
    ("the same on the writer: its writes moved", "node01",
     changes("node01", haproxy=(H3, H4), **MARIADB), False,
     dict(stop=["haproxy", "mariadb"], start=["mariadb", "haproxy"], drain=False, quorum=False, ist=True, upgrade=0, moves=True)),
    ("haproxy on the writer: its writes stay", "node01", changes("node01", haproxy=(H3, H4)), False,
     dict(stop=["haproxy"], start=["haproxy"], drain=False, quorum=False, ist=False, upgrade=0, moves=False)),
    ("a new MariaDB major: mariadb-upgrade after the start", "node03",
     changes("node03", mariadb_server=(M18, M114, "mariadb-upgrade"), mariadb_client=(M18, M114), mariadb_backup=(M18, M114)),
     False, dict(stop=["mariadb"], start=["mariadb"], drain=False, quorum=False, ist=True, upgrade=1, moves=False)),
    ("galera-4 restarts mariadb too", "node02", changes("node02", galera_4=("26.4.14-1", "26.4.20-1")), False,
     dict(stop=["mariadb"], start=["mariadb"], drain=False, quorum=False, ist=True, upgrade=0, moves=False)),
    ("rabbitmq-server: quorum-critical checked, drained, revived", "node02", changes("node02", rabbitmq_server=(R12, R13)),
     False, dict(stop=["rabbitmq-server"], start=["rabbitmq-server"], drain=True, quorum=True, ist=False, upgrade=0, moves=False)),
    ("socat alone: no unit stops", "node02", changes("node02", socat=("1.7.4.4-2", "1.7.4.4-2+b1")), False,
     dict(stop=[], start=[], drain=False, quorum=False, ist=False, upgrade=0, moves=False)),
    ("pending, nothing left: the pinned units started, mariadb-upgrade (a no-op when done), no stop, no install",
     "node02", [], True, dict(stop=[], start=["mariadb", "haproxy"], drain=False, quorum=False, ist=False, upgrade=1, moves=False)),
    ("pending on the writer: its writes moved back", "node01", [], True,
     dict(stop=[], start=["mariadb", "haproxy"], drain=False, quorum=False, ist=False, upgrade=1, moves=True)),
]


def started(cmds):
    return [m.group(1) for c in cmds for m in [re.match(r"timeout \d+ systemctl start (\S+) \|\|", c)] if m]


@pytest.mark.parametrize("case,node,chs,pending,want", TURNS, ids=[t[0] for t in TURNS])
def test_turn(case, node, chs, pending, want):
    # the site pins mariadb-server and haproxy in every row (a turn's changes are some of its pins)
    t = commands(node, chs, pending=pending, pinned=sorted({"mariadb-server", "haproxy"} | {c.package for c in chs}))
    every = [*t.before, *t.work, *t.after]
    assert t.before[0] == f"mkdir -p /var/lib/openstack-ha/pending && date +%s > {UPGRADE_MARKER}"  # the marker first
    assert t.after[-1] == f"rm -f {UPGRADE_MARKER}" and t.after[0] == "VIP-BACK"  # cleared last
    assert re.search(rf"echo \"{node} upgraded in \$\(\( \$\(date \+%s\) - \$\(cat {UPGRADE_MARKER}\) \)\) s\"", t.after[1])
    stops = [m.group(1) for c in t.work for m in [re.match(r"timeout 300 systemctl stop (\S+) \|\|", c)] if m]
    assert stops == want["stop"]
    assert started(every) == want["start"]
    assert any("rabbitmq-upgrade drain" in c for c in every) == want["drain"]
    assert any("rabbitmq-upgrade revive" in c for c in every) == ("rabbitmq-server" in want["start"])
    assert any("check_if_node_is_quorum_critical" in c for c in every) == want["quorum"]
    assert any(SST_LINE in c for c in every) == want["ist"]
    assert sum("mariadb-upgrade --silent" in c for c in every) == want["upgrade"]
    assert t.moves_writes == want["moves"]
    installs = [c for c in t.work if "apt-get install" in c]
    if chs:
        (install,) = installs
        assert all(f"{c.package}={c.wanted}" in install for c in chs)
        assert "VIP-AWAY" in t.before  # the VIP away before anything stops
        assert t.work.index(install) > max((i for i, c in enumerate(t.work) if " systemctl stop " in c), default=-1)
        assert t.work.index(install) < min((i for i, c in enumerate(t.work) if " systemctl start " in c), default=len(t.work))
        assert any("check_local_alarms" in c for c in t.before) and any("partitions" in c for c in t.before)
    else:
        assert not installs and "VIP-AWAY" not in t.before  # nothing to take away for: finish only


def test_a_turn_ends_once_its_controller_may_take_the_vip_again():
    """The wait for keepalived out of FAULT comes after the VIP marker is cleared and before the
    marker that ends the turn is removed (lab: HAProxy restarted, check_alive needs 20 s)."""
    chs = changes("node02", haproxy=(H3, H4))
    t = turn_commands("node02", chs, pending=False, pinned=["haproxy"], members=3, writer="node01",
                      vip_away=["VIP-AWAY"], vip_back="VIP-BACK", wait=wait, gcache="512M", vip_ready="VIP-READY")
    assert t.after.index("VIP-BACK") < t.after.index("VIP-READY") < t.after.index(f"rm -f {UPGRADE_MARKER}")
    assert "VIP-READY" not in commands("node02", chs).after  # none given: none run


def test_the_turns_marker_value_is_neither_off_nor_the_operators_maintenance():
    """keepalived reads any value but 0 as FAULT (the VIP leaves); the Maintenance fact reads only
    1 as the operator's maintenance, which an interrupted turn must not be taken for."""
    assert AWAY != 0
    assert Maintenance().process([f"maintenance={AWAY}"])["out"] is False
    assert Maintenance().process(["maintenance=1"])["out"] is True


def test_every_turn_is_shell():
    for _, node, chs, pending, _ in TURNS:
        t = commands(node, chs, pending=pending, pinned=["mariadb-server", "haproxy", "rabbitmq-server", "memcached"])
        for cmd in [*t.before, *t.work, *t.after]:
            proc = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert proc.returncode == 0, (cmd, proc.stderr)


def test_the_blast_radius_says_the_steps():
    assert turn_steps(changes("node02", haproxy=(H3, H4), **MARIADB)) == [
        "drain", "stop haproxy mariadb", "upgrade", "start", "IST", "back"]
    assert "revive" in turn_steps(changes("node02", rabbitmq_server=(R12, R13)))
    assert "mariadb-upgrade" in turn_steps(changes("node02", mariadb_server=(M18, M114, "mariadb-upgrade")))
    assert units_of(["socat", "rsync", "nftables"]) == []


def _stubs(tmp_path: Path, apt_rc: int, journal: str) -> dict:
    """PATH with stub apt-get (it records whether policy-rc.d forbids starts) and journalctl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/apt-args\n"
                                     f"{tmp_path}/policy-rc.d; echo $? > {tmp_path}/policy-rc\nexit {apt_rc}\n")
    (bin_dir / "journalctl").write_text(f"#!/bin/sh\nprintf '%s\\n' {journal!r}\n")
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/systemctl-args\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("apt_rc", [0, 100])
def test_apt_runs_with_nothing_started_and_policy_removed(tmp_path, apt_rc):
    env = _stubs(tmp_path, apt_rc, "")
    cmd = install_command("node02", changes("node02", haproxy=(H3, H4), **MARIADB)).replace(POLICY_RC, str(tmp_path / "policy-rc.d"))
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == (0 if apt_rc == 0 else 1), proc.stderr
    assert (tmp_path / "policy-rc").read_text().strip() == "101"  # invoke-rc.d is told: do not start
    assert not (tmp_path / "policy-rc.d").exists()  # removed whatever apt did
    # mariadb-server's postinst enables mariadb.socket on an upgrade: disabled again, apt's outcome kept
    assert (tmp_path / "systemctl-args").read_text().split() == ["disable", "-q", "mariadb.socket", "mariadb-extra.socket"]
    args = (tmp_path / "apt-args").read_text()
    assert f"install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold haproxy={H4} mariadb-backup={M19}" in args
    if apt_rc:
        assert "node02: apt-get install" in proc.stderr and "services stay stopped" in proc.stderr


def test_apt_leaves_a_foreign_policy_alone(tmp_path):
    env = _stubs(tmp_path, 0, "")
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# a container's own\nexit 101\n")
    cmd = install_command("node02", changes("node02", haproxy=(H3, H4))).replace(POLICY_RC, str(policy))
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "exists and is not the upgrade's" in proc.stderr
    assert "a container's own" in policy.read_text() and not (tmp_path / "apt-args").exists()
    assert POLICY_TAG not in policy.read_text()


@pytest.mark.parametrize("journal,rc,said", [
    (f"WSREP: Prepared IST receiver for 10-20\nWSREP: {IST_LINE}: uuid:20", 0, "node02: rejoined by IST"),
    (f"WSREP_SST: [INFO] {SST_LINE}.........\nWSREP: {IST_LINE}: uuid:20", 1, "full state transfer (SST), not IST"),
    ("WSREP: Synchronized with group, ready for connections", 0, "no state transfer in its journal"),
])
def test_ist_or_sst(tmp_path, journal, rc, said):
    env = _stubs(tmp_path, 0, journal)
    (ist,) = [c for c in start_commands("node02", "mariadb", 3, wait, "512M", fresh=True) if "journalctl -u mariadb --since" in c]
    proc = subprocess.run(["bash", "-c", ist], capture_output=True, text=True, env=env)
    assert proc.returncode == rc and said in proc.stdout + proc.stderr
    if rc:
        assert "galera_gcache_size 512M" in proc.stderr


def _turn_names(path: str, limit: tuple = ()) -> list[str]:
    """The deploy's upgrade operations of a case, in pyinfra's order (every host's); `limit`:
    the hosts of a --limit (default: all)."""
    case = opkit.load_case(Path(opkit.CASES, path))
    with opkit.planning(case) as (state, inventory):
        import operations.upgrade as upgrade
        from pyinfra.context import ctx_host

        if limit:
            state.active_hosts = {h for h in inventory if h.name in limit}
        for h in inventory:
            if limit and h.name not in limit:
                continue
            with ctx_host.use(h):
                upgrade.configure()
        names = []
        for op_hash in state.get_op_order():
            hosts = []
            for h in inventory:
                with ctx_host.use(h):
                    if op_hash in state.ops[h] and list(state.get_op_data_for_host(h, op_hash).command_generator()):
                        hosts.append(h.name)
            if hosts:
                names.append((", ".join(state.get_op_meta(op_hash).names).removeprefix("Package versions | "), hosts))
    return [(n, hs) for n, hs in names if n.startswith("upgrade: ")]


def test_the_turns_in_the_deploy_order():
    """node02, node03, then node01 (the writer and VIP holder), its writes moved off on every
    HAProxy between its checks and its stop, and back before it is marked back."""
    got = _turn_names("upgrade/rolling_three.json")
    assert got == [
        ("upgrade: node02 marked, checked, the VIP away", ["node02"]),
        ("upgrade: node02 drained, stopped, upgraded, started", ["node02"]),
        ("upgrade: node02 back in service", ["node02"]),
        ("upgrade: node03 marked, checked, the VIP away", ["node03"]),
        ("upgrade: node03 drained, stopped, upgraded, started", ["node03"]),
        ("upgrade: node03 back in service", ["node03"]),
        ("upgrade: node01 marked, checked, the VIP away", ["node01"]),
        ("upgrade: writes moved off node01 (HAProxy runtime API)", ["node01", "node02", "node03"]),
        ("upgrade: node01 drained, stopped, upgraded, started", ["node01"]),
        ("upgrade: writes back to node01 (HAProxy runtime API)", ["node01", "node02", "node03"]),
        ("upgrade: node01 back in service", ["node01"]),
    ]


def test_after_a_failed_turn_nothing_further():
    """node02 failed in its turn: node03's and node01's turns (and the writes' moves) do nothing."""
    case = opkit.load_case(Path(opkit.CASES, "upgrade/rolling_three.json"))
    got = opkit.run(case, failed=("node02",))
    assert not any(op.startswith("Package versions | upgrade:") for rows in got.values() for op, _ in rows)


@pytest.mark.parametrize("status,rc", [('{"running_nodes":["rabbit@node01"],"partitions":{}}', 0), ('{"partitions": []}', 0),
                                       ('{"partitions":{"rabbit@node01":["rabbit@node03"]}}', 1)])
def test_the_partition_precheck(status, rc):
    (check,) = [c for c in commands("node02", changes("node02", haproxy=(H3, H4))).before if "partitions" in c]
    sh = check.replace("timeout 60 rabbitmqctl -q cluster_status --formatter json", f"echo '{status}'")
    proc = subprocess.run(["bash", "-c", sh], capture_output=True, text=True)
    assert proc.returncode == rc and (not rc or "node02: RabbitMQ sees a partition" in proc.stderr)


def test_a_controller_left_out_by_limit_gets_no_turn():
    """--limit node02,node03: their turns only; node01 (the writer) keeps its versions, and no
    HAProxy moves its writes."""
    got = _turn_names("upgrade/rolling_three.json", limit=("node02", "node03"))
    assert [n for n, _ in got] == [
        "upgrade: node02 marked, checked, the VIP away", "upgrade: node02 drained, stopped, upgraded, started",
        "upgrade: node02 back in service", "upgrade: node03 marked, checked, the VIP away",
        "upgrade: node03 drained, stopped, upgraded, started", "upgrade: node03 back in service"]
