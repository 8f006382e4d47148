"""Failover drills on the lab: what clients of the VIP see while nodes and services fail.

The Python side of tests/lab/test_30_drills.py and the other drills, and of tests/bench/*.py
(LAB ONLY), gathered under one name (`from lab import drills`) from its rooms:

- lab/waits.py: DrillError, log(), wait_for() (every wait a bounded polling loop),
  `interventions` (what restore() had to do);
- lab/faults.py: who holds the VIP (read from every running node, never assumed), place_vip,
  power cuts, packet filters inside a node, systemctl, power_on;
- lab/clients.py: HTTP through the VIP to the API stand-ins (lab/backends.py), which answer
  with the name of the node that served the request; SQL through the VIP (`mysql` on this
  host, the site's admin account), one-shot or as a long-lived Session; counted writes;
  HAProxy's view of its servers; client threads;
- lab/health.py: pyinfra runs, the health report (verify.py, JSON), wait_healthy, restore()
  (bounded: LabUnrecoverable when the lab cannot be put back) and rebuild().

Figures are measured, never asserted here. Project constants (VIP, ports, accounts, paths,
secret names) come from the site model (lab/sitemodel.py).
"""

from lab.clients import (  # noqa: F401
    Client, Session, Writer, WRITES_DB, db_node, drop, haproxy_servers, http_get, http_names,
    monitoring_get, node_sql, prepare_writes, refuses, secrets, sql, wait_server, write, wsrep,
)
from lab.faults import (  # noqa: F401
    FILTER_TABLE, allow_packets, cut_off, drop_packets, dropped, holder, holders, holds_vip, nodes,
    place_vip, power_cut, power_on, running, systemctl, wait_holder,
)
from lab.health import (  # noqa: F401
    DEPLOY_TIMEOUT, PYINFRA, RESTORE_BOUND, ROOT, LabUnrecoverable, changed_operations, deploy,
    galera_synced_count, pyinfra, rabbit_running, rebuild, restore, run_excerpt, blast_radius, unstick_rabbitmq,
    verify_report, wait_healthy,
)
from lab.waits import (  # noqa: F401
    DrillError, SessionClosed, SqlError, interventions, intervene, log, wait_for,
)
