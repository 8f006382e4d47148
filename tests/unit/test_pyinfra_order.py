"""operations/pyinfra_order.py gives pyinfra's own operation order (inspect.stack()'s) on every
operation call of a whole site's planning, in CLI mode as `pyinfra SITE deploy.py` plans: the
order makes each operation's hash, so one difference would rename operations between runs."""

from __future__ import annotations

import importlib

import pyinfra
import pytest
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host

import opkit
import unitkit  # noqa: F401  (the repository on sys.path)
from operations import pyinfra_order

operation = importlib.import_module("pyinfra.api.operation")

CASE = opkit.CASES / "site" / "deployed.json"


def test_installed_for_the_pinned_pyinfra():
    assert pyinfra_order.PYINFRA_VERSION == pyinfra_order.PINNED, \
        "pyinfra is not the pinned version: check pyinfra_order against its get_operation_order_from_stack()"
    assert pyinfra_order.install()
    assert operation.get_operation_order_from_stack is pyinfra_order.operation_order
    assert pyinfra_order.install() and operation.get_operation_order_from_stack is pyinfra_order.operation_order


def plan(case: dict, deploy_file: str | None) -> list[tuple[list[int], list[int]]]:
    """Every operation call of the case's components on every host, planned in CLI mode with
    `deploy_file` as the deploy pyinfra runs: (pyinfra's order, ours) per call, both read from
    the same frame."""
    pyinfra_order.install()
    pyinfras = pyinfra_order.operation_order.__wrapped__
    calls = []

    def both(state):
        calls.append((pyinfras(state), pyinfra_order.operation_order(state)))
        return list(calls[-1][1])  # pyinfra extends the list it gets with the loop position

    with opkit.planning(case) as (state, inventory), pytest.MonkeyPatch.context() as mp:
        mp.setattr(pyinfra, "is_cli", True)
        mp.setattr(operation, "get_operation_order_from_stack", both)
        state.current_stage = StateStage.Prepare  # as the CLI plans
        state.current_deploy_filename = deploy_file
        state.current_op_file_number = 7
        modules = [importlib.import_module(f"operations.{c}") for c in case["components"]]
        for h in inventory:
            with ctx_host.use(h):
                for module in modules:
                    module.configure()
    return calls


@pytest.mark.parametrize("deploy_file", [__file__, None, "/nowhere/deploy.py"],
                         ids=["from this file", "no deploy file", "a file not on the stack"])
def test_same_order_as_pyinfra_on_every_operation_call(deploy_file):
    calls = plan(opkit.load_case(CASE), deploy_file)
    assert len(calls) > 200, len(calls)
    differ = [(i, theirs, ours) for i, (theirs, ours) in enumerate(calls) if theirs != ours]
    assert not differ, f"{len(differ)} of {len(calls)} calls differ, e.g. {differ[:3]}"
    # the case this guards: the deploy's own lines follow the run's file number
    if deploy_file == __file__:
        assert all(ours[0] == 7 and len(ours) > 2 for _, ours in calls)
