"""The backup component when the other end of the copies is down (seen in the soak: a deploy
during node02's power cut stopped with a Python traceback, ConnectionError from backup.py,
instead of going on without node02). Facts in, commands out (opkit)."""

import copy
import json

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


def test_copy_controller_down_pins_nothing_and_plans_the_rest(deployed_with_backups):
    case = {**deployed_with_backups, "unreachable": ["node02"]}
    got = run(case)
    assert "node02" not in got or got["node02"] == []
    assert not any("host key pinned" in name for name, _ in got.get("node03", [])), json.dumps(got)[:500]


def test_backup_node_down_leaves_the_copy_controllers_authorization(deployed_with_backups):
    case = {**deployed_with_backups, "unreachable": ["node03"]}
    got = run(case)
    assert not any("authorized" in name for name, _ in got.get("node02", [])), json.dumps(got)[:500]
