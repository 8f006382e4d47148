"""systemd's daemon-reload after a unit file survives a cut run (operations.steps.mark_reload,
daemon_reload): its marker is read with the units (facts.host.ServiceStates' `reloads`), a
host that shows one and no file change reloads and clears it, a host without one does
nothing. Each component that writes unit files or drop-ins, offline (opkit), from a case
whose state after the change is the deployed one."""

from __future__ import annotations

import copy
import subprocess

import pytest

import unitkit  # noqa: F401
import opkit
import facts.host
from facts.host import PENDING_DIR, ServiceStates

# (component, a case whose facts_after is that component deployed, the node that shows the marker,
#  the daemon-reload step's name, the commands it runs before the reload)
SITES = [
    ("backup", "backup/first_run", "node03", "backup | backup: reload systemd units", []),
    ("backup", "backup/first_run", "node01", "backup | backup: reload systemd units", []),  # no longer the backup node
    ("dbcheck", "dbcheck/port_changed", "node02", "Galera health check | dbcheck: reload systemd units", []),
    ("firewall", "firewall/drifted", "node02", "Firewall | firewall: reload systemd units", []),
    ("haproxy", "haproxy/unit_changed", "node02", "HAProxy | haproxy: reload systemd units (its drop-in)",
     ["install -d /var/lib/openstack-ha"]),
    ("monitoring", "monitoring/enabled", "node02", "Monitoring | monitoring: reload systemd units (the collector's)", []),
    ("rabbitmq_unit", "rabbitmq/start_bound_changed", "node02",
     "RabbitMQ | rabbitmq: reload systemd units (rabbitmq-server's drop-in)", []),
]


def deployed(case_name: str, marker_on: str | None = None, component: str = "") -> dict:
    """The case with its state after the change as the state before; `marker_on` shows the
    daemon-reload marker of `component` (an earlier run cut between the unit file and its reload)."""
    case = opkit.load_case(opkit.CASES / f"{case_name}.json")
    case["facts"] = copy.deepcopy(case["facts_after"])
    if marker_on:
        facts = case["facts"]
        states = copy.deepcopy(facts.get(marker_on, {}).get("ServiceStates", facts["*"]["ServiceStates"]))
        states["$reloads"] = [component]
        facts.setdefault(marker_on, {})["ServiceStates"] = states
    return case


@pytest.mark.parametrize("component, case_name, node, step, before", SITES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_marker_left_and_no_file_change_reloads_and_clears_it(component, case_name, node, step, before):
    got = opkit.run(deployed(case_name, node, component))
    reload = f"systemctl daemon-reload && rm -f {PENDING_DIR}/daemon-reload.{component}"
    assert got[node] == [[step, [*before, reload]]], got[node]  # no restart, no other step
    assert all(rows == [] for name, rows in got.items() if name != node), got


@pytest.mark.parametrize("component, case_name", sorted({(c, n) for c, n, *_ in SITES}))
def test_no_marker_and_no_file_change_is_a_no_op(component, case_name):
    got = opkit.run(deployed(case_name))
    assert all(rows == [] for rows in got.values()), got


def test_another_components_marker_is_not_this_ones():
    got = opkit.run(deployed("rabbitmq/start_bound_changed", "node02", "haproxy"))
    assert all(rows == [] for rows in got.values()), got


def test_the_whole_site_reloads_each_component_whose_marker_was_left():
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    states = copy.deepcopy(case["facts"]["*"]["ServiceStates"])
    case["facts"].setdefault("node02", {})["ServiceStates"] = {**states, "$reloads": ["firewall", "rabbitmq_unit"]}
    got = opkit.run(case)
    assert [[step, cmds[-1]] for step, cmds in got["node02"]] == [
        ["Firewall | firewall: reload systemd units", f"systemctl daemon-reload && rm -f {PENDING_DIR}/daemon-reload.firewall"],
        ["RabbitMQ | rabbitmq: reload systemd units (rabbitmq-server's drop-in)",
         f"systemctl daemon-reload && rm -f {PENDING_DIR}/daemon-reload.rabbitmq_unit"],
    ]
    assert got["node01"] == [] and got["node03"] == []


def test_service_states_lists_the_reload_markers(tmp_path, monkeypatch):
    """The fact's own command, run here on a marker directory: the daemon-reload markers are
    listed by component; a unit's restart marker is not one; no directory is no marker."""
    monkeypatch.setattr(facts.host, "PENDING_DIR", str(tmp_path / "pending"))
    command = ServiceStates().command(units=())
    answer = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()
    assert ServiceStates().process(answer)["reloads"] == []
    (tmp_path / "pending").mkdir()
    for name in ("haproxy", "daemon-reload.haproxy", "daemon-reload.rabbitmq_unit"):
        (tmp_path / "pending" / name).touch()
    answer = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()
    assert ServiceStates().process(answer)["reloads"] == ["haproxy", "rabbitmq_unit"]


def test_service_states_parses_units_and_reload_markers():
    got = ServiceStates().process(["haproxy active enabled pending", "daemon-reload: firewall haproxy ",
                                   "keepalived inactive not-found"])
    assert got["reloads"] == ["firewall", "haproxy"] and "daemon-reload:" not in got["units"]
    assert got["units"]["haproxy"]["pending"] is True and got["error"] is None
    assert ServiceStates().process(["haproxy active enabled", "daemon-reload: "])["reloads"] == []
