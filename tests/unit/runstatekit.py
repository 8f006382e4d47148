"""A pyinfra run for tests that need one current (operations/runstate.py keeps per-run state
with the current State)."""

from __future__ import annotations

from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_state


def a_run():
    """A State of its own, current inside the `with`: one run."""
    return ctx_state.use(State(Inventory(([], {})), Config()))
