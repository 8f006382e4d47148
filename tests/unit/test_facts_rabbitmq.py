"""facts/rabbitmq.py's RabbitmqCluster command run by dash with stand-ins for systemctl, ss and
rabbitmqctl (no broker here): the unit's state, whether a broker listens, and the cluster's
nodes read from this host's own mnesia directory (rabbit@ its short host name)."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from facts.rabbitmq import RabbitmqCluster
from unitkit import stand_ins

SH = shutil.which("dash") or "sh"
MNESIA = "/var/lib/rabbitmq/mnesia"


@pytest.fixture
def node(tmp_path):
    tools = {"rabbitmqctl": "exit 0", "systemctl": "exit 0",
             "ss": "[ -n \"$LISTENING\" ] && echo 'LISTEN 0 128 0.0.0.0:5672 0.0.0.0:*'; exit 0"}
    short = socket.gethostname().split(".")[0]
    (tmp_path / "mnesia" / f"rabbit@{short}").mkdir(parents=True)
    (tmp_path / "mnesia" / f"rabbit@{short}" / "cluster_nodes.config").write_text(
        "{['rabbit@node01','rabbit@node02'],['rabbit@node01','rabbit@node02']}.\n")

    def run(listening: bool) -> dict:
        command = RabbitmqCluster().command(port=5672).replace(MNESIA, str(tmp_path / "mnesia"))
        env = stand_ins(tmp_path / "bin", tools, LISTENING="1" if listening else "")
        out = subprocess.run([SH, "-c", command], capture_output=True, text=True, env=env, timeout=60).stdout
        return RabbitmqCluster().process(out.splitlines())
    return run


def test_a_running_broker_and_its_cluster_nodes(node):
    got = node(listening=True)
    assert got == {"installed": True, "running": True, "broker": True, "nodes": ["rabbit@node01", "rabbit@node02"],
                   "reaches": None, "error": None}


def test_a_unit_active_without_a_listener_is_no_broker(node):
    got = node(listening=False)
    assert got["running"] and not got["broker"] and got["nodes"] == ["rabbit@node01", "rabbit@node02"]
