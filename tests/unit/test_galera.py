"""operations/galera.py while executing: a whole-site recovery chooses its bootstrap node only
once the waiting servers stopped, from every position read then (the plan made again)."""

from __future__ import annotations

import copy

import pytest
from pyinfra.api.host import Host
from pyinfra.context import ctx_host

import opkit

UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
CASE = opkit.CASES / "galera" / "whole_site_stop.json"


def stopped(seqno: int) -> dict:
    """A waiting server once stopped: seqno -1 in grastate.dat, its position from galera_recovery."""
    return {"installed": True, "active": False, "grastate_uuid": UUID, "grastate_seqno": "-1",
            "grastate_safe_to_bootstrap": "0", "recovered_position": f"{UUID}:{seqno}", "error": None}


def execute(live: dict) -> dict[str, dict[str, list[str]]]:
    """Plan the whole-site-stop case, then execute its recovery steps with `live` as every
    controller's GaleraNode read while executing: {host: {operation name: [commands]}}."""
    case = opkit.load_case(CASE)
    reads = []
    with opkit.planning(case) as (state, inventory):
        from operations import galera

        for h in inventory:
            with ctx_host.use(h):
                galera.configure()
        planned = Host.get_fact

        def get_fact(self, cls, *args, **kwargs):
            if cls.__name__ == "GaleraNode":
                reads.append(self.name)
                value = live[self.name]
                if isinstance(value, Exception):
                    raise value
                return copy.deepcopy(value)
            return planned(self, cls, *args, **kwargs)

        mp = pytest.MonkeyPatch()
        mp.setattr(Host, "get_fact", get_fact)
        state.is_executing = True
        out = {}
        try:
            for h in inventory:
                with ctx_host.use(h):
                    rows = {}
                    for op_hash in state.get_op_order():
                        name = ", ".join(state.get_op_meta(op_hash).names).removeprefix("MariaDB Galera | ")
                        if op_hash in state.ops[h] and "whole-site recovery" in name:
                            rows[name] = [opkit.render_command(c) for c in state.get_op_data_for_host(h, op_hash).command_generator()]
                    out[h.name] = rows
        finally:
            mp.undo()
    assert sorted(reads) == sorted(live), "every controller read once per run, not once per host"
    return out


BOOT = "galera: bootstrap the most advanced (whole-site recovery)"


def test_the_most_advanced_bootstraps_and_the_others_join():
    got = execute({"node01": stopped(40), "node02": stopped(42), "node03": stopped(41)})
    (boot,) = [n for n, rows in got.items() if rows[BOOT]]
    assert boot == "node02"
    assert f"= {UUID}:42 ]" in got["node02"][BOOT][0] and "galera_new_cluster" in got["node02"][BOOT][0]
    joined = {n for n, rows in got.items() for op, cmds in rows.items() if "joins" in op and cmds}
    assert joined == {"node01", "node03"}  # node02 bootstrapped: never restarted to join


def test_a_tie_goes_to_inventory_order():
    got = execute({n: stopped(40) for n in ("node01", "node02", "node03")})
    assert [n for n, rows in got.items() if rows[BOOT]] == ["node01"]


def test_a_position_still_unknown_after_the_stops_fails_the_run_and_nobody_bootstraps():
    got = execute({"node01": stopped(40), "node02": {**stopped(41), "recovered_position": None},
                   "node03": stopped(39)})
    for name, rows in got.items():
        (only,) = rows[BOOT]  # one command: the refusal, said and failed; no bootstrap command
        assert only.startswith(f"echo '{name}: not bootstrapping Galera: ") and only.endswith(">&2; exit 1")
        assert "position could not be read" in only


def test_a_controller_unreadable_after_the_stops_fails_the_run():
    got = execute({"node01": stopped(40), "node02": ConnectionError("gone"), "node03": stopped(39)})
    assert all("node02 did not answer" in rows[BOOT][0] for rows in got.values())


def test_a_primary_formed_meanwhile_is_joined_not_bootstrapped():
    primary = {"installed": True, "active": True, "mysqld": "running", "query": "ok", "wsrep_cluster_status": "Primary",
               "wsrep_local_state_comment": "Synced", "wsrep_cluster_size": "1", "wsrep_last_committed": "42",
               "wsrep_cluster_state_uuid": UUID, "grastate_uuid": UUID, "grastate_seqno": "-1", "error": None}
    got = execute({"node01": stopped(40), "node02": primary, "node03": stopped(41)})
    assert all("not a bootstrap" in rows[BOOT][0] for rows in got.values())



@pytest.mark.parametrize("state,serves", [("Synced", True), ("Donor/Desynced", False)])
def test_the_serving_check_holds_under_pipefail_with_a_long_status(state, serves):
    """facts.galera.serving_check in bash with `set -o pipefail`, as the backup script runs it,
    the status longer than a pipe's buffer, so that a grep which stops at its first match leaves `echo` writing
    into a closed pipe (EPIPE fails the pipeline): a serving node must pass, another fail. The
    backup on the lab once refused a Synced node this way."""
    import subprocess
    from facts.galera import serving_check
    status = ("wsrep_cluster_status\tPrimary\n" + "wsrep_filler\tx\n" * 6000
              + f"wsrep_local_state_comment\t{state}\nwsrep_ready\tON")
    script = ("set -o pipefail\nmysql() { printf '%s\\n' \"$STATUS\"; }\n"
              + serving_check() + " && echo SERVES || echo NOT")
    out = subprocess.run(["bash", "-c", script], env={"STATUS": status, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == ("SERVES" if serves else "NOT"), out.stdout + out.stderr
