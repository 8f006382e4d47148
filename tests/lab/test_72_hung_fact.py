"""A fact that hangs before the run, on the lab: the pre-run bundle's bound
(operations.before.PRE_RUN_TIMEOUT, HA_PRE_RUN_TIMEOUT) cuts it on the host, the controller's state is unknown,
and the deploy refuses before any change (it never takes the node for one to join).

RabbitMQ's pre-run fact (facts.rabbitmq.RabbitmqCluster) is the one that runs `ss`: an `ss`
that never returns, first in root's PATH on node03, hangs that fact alone.
"""

from __future__ import annotations

import time

import lab
from lab import drills
from lab.drills import log
BOUND = 30  # HA_PRE_RUN_TIMEOUT for this drill (the default, 180 s, would cost the suite 2.5 minutes)

HANG = "/usr/local/sbin/ss"  # before /usr/bin/ss in root's PATH over SSH


def test_a_hung_fact_before_the_run_stops_it_before_any_change(healthy):
    lab.exec_("node03", ["sh", "-c", f"printf '#!/bin/sh\\nexec sleep 100000\\n' > {HANG} && chmod 755 {HANG}"])
    try:
        started = time.monotonic()
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", env={"HA_PRE_RUN_TIMEOUT": str(BOUND)})
        took = time.monotonic() - started
    finally:
        lab.exec_("node03", ["rm", "-f", HANG])
    out = run.stdout
    assert run.returncode != 0, drills.run_excerpt(out)
    assert "could not read the RabbitMQ state of node03" in out and "no host was changed" in out, drills.run_excerpt(out)
    assert "--> Starting operation" not in out, drills.run_excerpt(out)  # refused while planning
    assert BOUND <= took < BOUND + 120, took
    log(f"a hung fact on node03: the deploy refused after {took:.0f} s, nothing changed")
    run = drills.deploy()
    assert run.returncode == 0 and "Blast radius: no service restarts or reloads" in run.stdout, drills.run_excerpt(run.stdout)
