"""The backup component when the other end of the copies is down (seen in the soak: a deploy
during node02's power cut stopped with a Python traceback, ConnectionError from backup.py,
instead of going on without node02). Facts in, commands out (opkit)."""

import copy
import json
import logging

import pytest

import unitkit  # noqa: F401  (first: puts the repository on sys.path)
from opkit import CASES, load_case, run


@pytest.fixture
def deployed_with_backups() -> dict:
    """first_run.json's state after: backups set up, every controller deployed."""
    case = load_case(CASES / "backup" / "first_run.json")
    case = copy.deepcopy(case)
    case["facts"] = case["facts_after"]
    return case


def warnings(caplog) -> set[str]:
    return {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "could not be reached" in r.getMessage()}


def test_copy_controller_down_pins_nothing_and_plans_the_rest(deployed_with_backups, caplog):
    case = {**deployed_with_backups, "unreachable": ["node02"]}
    with caplog.at_level(logging.WARNING):
        got = run(case)
    assert "node02" not in got or got["node02"] == []
    assert not any("host key pinned" in name for name, _ in got.get("node03", [])), json.dumps(got)[:500]
    assert warnings(caplog) == {"[node03] backup: node02 could not be reached: its pinned host key is left as it is; "
                                "the deploy after it is back checks it"}


def test_backup_node_down_leaves_the_copy_controllers_authorization(deployed_with_backups, caplog):
    case = {**deployed_with_backups, "unreachable": ["node03"]}
    with caplog.at_level(logging.WARNING):
        got = run(case)
    assert not any("authorized" in name for name, _ in got.get("node02", [])), json.dumps(got)[:500]
    assert warnings(caplog) == {"[node02] backup: node03 could not be reached: its key's authorization here is left as "
                                "it is; the deploy after it is back checks it"}
