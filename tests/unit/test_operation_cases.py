"""Each component's configure() offline, as data cases (tests/unit/operations/*/*.json, run by
opkit.py): the facts each host reports in, the commands each host would run out; then the
facts the change leaves behind, and no command on any host (idempotence, without a lab)."""

from __future__ import annotations

import json

import pytest

import opkit

CASES = sorted(opkit.CASES.rglob("*.json"))


def ids(path):
    return str(path.relative_to(opkit.CASES).with_suffix(""))


def show(case, got) -> str:
    return json.dumps(opkit.as_case(case, got), indent=1)


@pytest.mark.parametrize("path", CASES, ids=ids)
def test_facts_in_commands_out(path):
    case = opkit.load_case(path)
    got = opkit.run(case)
    assert opkit.matches(opkit.expected(case), got), f"{ids(path)}: the commands differ from the case's:\n{show(case, got)}"


@pytest.mark.parametrize("path", [p for p in CASES if "facts_after" in opkit.load_case(p)], ids=ids)
def test_the_state_after_the_change_plans_no_command(path):
    case = opkit.load_case(path)
    got = opkit.run(case, "facts_after")
    assert all(rows == [] for rows in got.values()), f"{ids(path)}: a second run would still change:\n{show(case, got)}"


def test_every_component_has_a_case():
    covered = {c for p in CASES for c in opkit.load_case(p)["components"]}
    assert covered == set(opkit.COMPONENTS) | set(opkit.COMMANDS)


def test_a_fact_the_case_lacks_is_an_error_not_a_default():
    case = opkit.load_case(opkit.CASES / "memcached" / "config_changed.json")
    del case["facts"]["*"]["ServiceStates"]
    with pytest.raises(KeyError, match="no ServiceStates fact"):
        opkit.run(case)


def test_a_wrong_expectation_fails():
    case = opkit.load_case(opkit.CASES / "haproxy" / "config_changed.json")
    got = opkit.run(case)
    wrong = opkit.expected(case)
    wrong["node02"][-1][1][0] = "systemctl restart haproxy"  # a restart where a reload is due
    assert not opkit.matches(wrong, got)
