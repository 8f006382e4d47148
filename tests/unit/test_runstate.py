"""Per-run state (operations/runstate.py): kept with pyinfra's current State, shared by the
hosts of one run, never by two runs; nothing to clear between them."""

from __future__ import annotations

import gc
import weakref

import gevent
import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_state
from runstatekit import a_run

from operations import runstate


def test_once_computes_once_per_run_and_again_in_the_next():
    calls = []

    @runstate.once
    def plan():
        calls.append(1)
        return {"n": len(calls)}

    with a_run():
        first = plan()
        assert plan() is first and calls == [1]
    with a_run():
        assert plan() == {"n": 2} and plan() is not first
    assert calls == [1, 1]


def test_hosts_planning_in_parallel_greenlets_compute_once():
    calls = []

    @runstate.once
    def slow():
        calls.append(1)
        gevent.sleep(0.01)  # another host's greenlet runs meanwhile
        return object()

    with a_run():
        got = [g.value for g in gevent.joinall([gevent.spawn(slow) for _ in range(5)])]
    assert len(calls) == 1 and all(v is got[0] for v in got)


def test_an_exception_is_not_kept():
    calls = []

    @runstate.once
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first read failed")
        return "read"

    with a_run():
        with pytest.raises(ConnectionError):
            flaky()
        assert flaky() == "read" and flaky() == "read" and len(calls) == 2


def test_run_dicts_belong_to_their_run_and_go_with_it():
    with a_run():
        runstate.run_dict("announced")["node01"] = ["restart"]
        assert runstate.run_dict("announced") == {"node01": ["restart"]}
        assert runstate.run_dict("other") == {}
    with a_run():
        assert runstate.run_dict("announced") == {}
    state = State(Inventory(([], {})), Config())
    with ctx_state.use(state):
        runstate.run_dict("x")["y"] = 1
    assert state in runstate._runs
    gone = weakref.ref(state)
    del state
    gc.collect()
    assert gone() is None  # the store does not keep its State alive, and goes with it


def test_outside_a_run_it_says_so():
    with ctx_state.use(None):  # (another test's pyinfra API call may have left its State current)
        with pytest.raises(RuntimeError, match="no pyinfra run is current"):
            runstate.this_run()
