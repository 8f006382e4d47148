"""operations/pyinfra_args.py: pyinfra's global argument list kept once per process gives the
same answer as pyinfra's own function, and operations get the same arguments; the host's data
read once gives pyinfra's own answer on every operation call of a site's planning."""

from __future__ import annotations

import copy
import importlib
from typing import get_type_hints

import pyinfra.api.arguments as arguments
import pytest
from pyinfra.context import ctx_host

import opkit
import unitkit  # noqa: F401  (the repository on sys.path)
from operations import pyinfra_args


def test_installed_for_the_pinned_pyinfra():
    assert pyinfra_args.PYINFRA_VERSION == pyinfra_args.PINNED, \
        "pyinfra is not the pinned version: check pyinfra_args against its all_global_arguments()"
    assert pyinfra_args.install()
    assert arguments.all_global_arguments.kept_by == "operations.pyinfra_args"


def test_same_answer_as_pyinfra_and_a_new_list_each_call():
    pyinfra_args.install()
    first, second = arguments.all_global_arguments(), arguments.all_global_arguments()
    assert first == list(get_type_hints(arguments.AllArguments).items()) == arguments.all_global_arguments.__wrapped__()
    assert first is not second  # a caller changing its list changes no other's
    first.clear()
    assert arguments.all_global_arguments() == second


def test_installing_twice_keeps_one_layer():
    pyinfra_args.install()
    kept = arguments.all_global_arguments
    assert pyinfra_args.install() and arguments.all_global_arguments is kept


# --- the host's data read once (install_lookup) ---------------------------------------------------

CASE = opkit.CASES / "site" / "deployed.json"


def test_the_lookup_is_installed_where_pyinfra_calls_it():
    assert pyinfra_args.install_lookup()
    for name in pyinfra_args.IMPORTERS:
        assert importlib.import_module(name).pop_global_arguments is pyinfra_args.pop_global_arguments, name
    assert pyinfra_args.install_lookup()  # twice: one layer
    assert pyinfra_args.pop_global_arguments.__wrapped__ is not pyinfra_args.pop_global_arguments


def test_pyinfras_answer_on_every_operation_call_of_a_site():
    """Every operation call of the deployed site's planning on every host: pyinfra's own
    function and ours give the same arguments, the same keys found, the same kwargs left. One
    host holds global arguments in its data (one in override and host data: override wins)."""
    pyinfra_args.install_lookup()
    theirs = pyinfra_args.pop_global_arguments.__wrapped__
    calls = []

    def both(state, host, kwargs):
        left = dict(kwargs)
        expected = theirs(state, host, left)
        got = pyinfra_args.pop_global_arguments(state, host, kwargs)
        calls.append((host.name, copy.deepcopy(expected), copy.deepcopy(got), left == kwargs))
        return got  # pyinfra then pops some of its keys: compared as they were returned

    case = opkit.load_case(CASE)
    with opkit.planning(case) as (state, inventory), pytest.MonkeyPatch.context() as mp:
        for name in pyinfra_args.IMPORTERS:
            mp.setattr(importlib.import_module(name), "pop_global_arguments", both)
        node = inventory.get_host("node02")
        node.data._retries = 3  # override data: the first source, it wins
        mp.setitem(inventory.host_data.setdefault("node02", {}), "_retries", 2)  # host data: the second
        mp.setitem(inventory.host_data["node02"], "_shell_executable", "bash")
        modules = [importlib.import_module(f"operations.{c}") for c in case["components"]]
        for h in inventory:
            with ctx_host.use(h):
                for module in modules:
                    module.configure()
    assert len(calls) > 300
    assert all(expected == got and same for _, expected, got, same in calls)
    mine = [got[0] for name, _, got, _ in calls if name == "node02"]
    assert mine and all(a["_shell_executable"] == "bash" and a["_retries"] == 3 for a in mine)
    assert all(got[0]["_retries"] == 0 for name, _, got, _ in calls if name != "node02")
