"""RabbitMQ restarts that need more than one node at a time, on the lab: every broker stopped
(a node that was not the last to stop waits for its peers' tables: they must start together).
An Erlang cookie change (announced; every node stops, gets the new cookie, starts together) is
checked by test_85_rotation, which rotates it with every other secret."""

from __future__ import annotations

import json

import lab
from lab import drills
from lab.drills import log

NODES = ["node01", "node02", "node03"]


def running_nodes(node: str) -> set[str]:
    out = lab.exec_(node, ["rabbitmqctl", "cluster_status", "--formatter", "json"], timeout=60).stdout
    return set(json.loads(out).get("running_nodes", []))


def test_every_broker_stopped_starts_together_on_the_next_deploy(healthy):
    for n in ["node02", "node03", "node01"]:  # node01 last: the others wait for its tables
        drills.systemctl(n, "stop", "rabbitmq-server")
    run = drills.deploy()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    steps = drills.blast_radius(run.stdout)
    assert all(f"{n}: start rabbitmq-server (every stopped broker together" in steps for n in NODES), steps
    assert running_nodes("node02") == {f"rabbit@{n}" for n in NODES}
    log("every broker stopped: started together by the deploy, cluster of 3 running")
