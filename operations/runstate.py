"""What one pyinfra run computes once and shares between its hosts, kept with that run's State.

Every host's deploy runs in its own greenlet, in one process, and they share the site, the
secrets, the plans, the facts read before the run and the announcements. All of it lives in
one store per pyinfra State (pyinfra.context's current one): a new State (the next run in the
same process, each unit test case) starts empty, and the store goes with its State. Nothing is
kept in module globals: there is nothing for a test to clear.

    @once
    def plan(): ...                  # computed once per run, shared by every host

    run_dict("announced")            # this run's dict of that name (per host: key by host name)
"""

from __future__ import annotations

import weakref

import gevent.lock

from pyinfra.context import ctx_state

_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # State -> its store
_MISSING = object()


def this_run() -> dict:
    """The current run's store (a dict), made on first use."""
    current = ctx_state.get()
    if current is None:
        raise RuntimeError("no pyinfra run is current (pyinfra.context's State is not set): per-run "
                           "state is only read within a run")
    store = _runs.get(current)
    if store is None:  # no greenlet switch between the test and the assignment
        store = _runs[current] = {}
    return store


def run_dict(name: str) -> dict:
    """This run's dict `name` (made empty on first use)."""
    return this_run().setdefault(("dict", name), {})


def once(fn):
    """Compute `fn()` once per run, shared by every host's deploy (they plan in parallel
    greenlets: a lock keeps the others from computing it again while the first does). An
    exception is not kept: the next caller computes again."""
    key = ("once", fn)

    def wrapper():
        store = this_run()
        entry = store.get(key)
        if entry is None:
            entry = store[key] = [gevent.lock.BoundedSemaphore(), _MISSING]
        with entry[0]:
            if entry[1] is _MISSING:
                entry[1] = fn()
        return entry[1]

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    wrapper.__wrapped__ = fn
    return wrapper
