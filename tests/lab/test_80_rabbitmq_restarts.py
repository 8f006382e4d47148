"""RabbitMQ restarts that need more than one node at a time, on the lab: every broker stopped
(a node that was not the last to stop waits for its peers' tables: they must start together),
and an Erlang cookie change (announced; every node stops, gets the new cookie, starts together).
Each leaves the lab healthy with the lab's own secrets."""

from __future__ import annotations

import json

import lab
from lab import drills, sitemodel
from lab.drills import log

NODES = ["node01", "node02", "node03"]


def running_nodes(node: str) -> set[str]:
    out = lab.exec_(node, ["rabbitmqctl", "cluster_status", "--formatter", "json"], timeout=60).stdout
    return set(json.loads(out).get("running_nodes", []))


def radius(run) -> str:
    return run.stdout.split("Blast radius")[1].split("-->")[0]


def test_every_broker_stopped_starts_together_on_the_next_deploy(healthy):
    for n in ["node02", "node03", "node01"]:  # node01 last: the others wait for its tables
        drills.systemctl(n, "stop", "rabbitmq-server")
    run = drills.deploy()
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    steps = radius(run)
    assert all(f"{n}: start rabbitmq-server (every stopped broker together" in steps for n in NODES), steps
    assert running_nodes("node02") == {f"rabbit@{n}" for n in NODES}
    log("every broker stopped: started together by the deploy, cluster of 3 running")


def test_an_erlang_cookie_change_is_announced_and_the_cluster_comes_back_whole(healthy):
    cookie = "DRILLCOOKIE" + "X" * 20
    try:
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", env={sitemodel.secret_env("rabbitmq_erlang_cookie"): cookie})
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        steps = radius(run)
        assert all(f"{n}: stop rabbitmq-server: the Erlang cookie changes" in steps for n in NODES), steps
        assert cookie not in run.stdout
        assert running_nodes("node03") == {f"rabbit@{n}" for n in NODES}
        log("cookie change: announced, every node stopped and started together, cluster of 3 running")
    finally:
        run = drills.deploy()  # the lab's own cookie again
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
    assert running_nodes("node01") == {f"rabbit@{n}" for n in NODES}
