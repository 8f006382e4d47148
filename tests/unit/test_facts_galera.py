"""facts/galera.py's GaleraNode command run by dash with stand-ins for pgrep, systemctl, mysql
and galera_recovery (no MariaDB here): what it prints for a running server and for one
stopped mid-transaction, and that pgrep runs once (the recovery reads its answer)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from facts.galera import GaleraNode
from unitkit import stand_ins

SH = shutil.which("dash") or "sh"
GRASTATE = "/var/lib/mysql/grastate.dat"


TOOLS = {  # each logs its run
    "mysqld": "exit 0",
    "systemctl": "exit 0",
    "pgrep": "[ -n \"$RUNNING\" ]",
    "mysql": "printf 'wsrep_cluster_status\\tPrimary\\nwsrep_local_state_comment\\tSynced\\n'",
    "galera_recovery": "echo --wsrep_start_position=u:5",
}


@pytest.fixture
def node(tmp_path):
    tools = {name: f"echo {name} >> \"$LOG\"\n{body}" for name, body in TOOLS.items()}

    def run(running: bool, seqno: str, recover: bool = True) -> tuple[dict, list[str]]:
        grastate = tmp_path / "grastate.dat"
        grastate.write_text(f"uuid:    u\nseqno:   {seqno}\nsafe_to_bootstrap: 0\n")
        log = tmp_path / "log"
        log.write_text("")
        command = GaleraNode().command(recover=recover).replace(GRASTATE, str(grastate))
        env = stand_ins(tmp_path / "bin", tools, LOG=str(log), RUNNING="1" if running else "")
        out = subprocess.run([SH, "-c", command], capture_output=True, text=True, env=env, timeout=60).stdout
        return GaleraNode().process(out.splitlines()), log.read_text().split()
    return run


def test_a_running_server_is_asked_and_not_recovered(node):
    fact, ran = node(running=True, seqno="-1")
    assert fact["mysqld"] == "running" and fact["wsrep_local_state_comment"] == "Synced" and fact["error"] is None
    assert "recovered_position" not in fact
    assert ran.count("pgrep") == 1 and "galera_recovery" not in ran


def test_a_server_stopped_mid_transaction_gives_its_recovered_position(node):
    fact, ran = node(running=False, seqno="-1")
    assert fact["recovered_position"] == "u:5" and "mysqld" not in fact and fact["grastate_seqno"] == "-1"
    assert ran.count("pgrep") == 1 and ran.count("galera_recovery") == 1


def test_a_clean_stop_or_the_reports_read_recovers_nothing(node):
    assert "recovered_position" not in node(running=False, seqno="42")[0]
    fact, ran = node(running=False, seqno="-1", recover=False)
    assert "recovered_position" not in fact and "galera_recovery" not in ran
