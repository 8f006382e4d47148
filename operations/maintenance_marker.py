"""Which controllers are in maintenance, as the deploy reads it (docs/operations.md "Maintenance"): every
controller's marker (config/paths.py MAINTENANCE_FILE), read once before the run.

Its own module so that the components that keep a controller in maintenance out (Galera,
RabbitMQ) and the maintenance command (operations/maintenance.py, which runs their steps)
import it without importing each other.
"""

from __future__ import annotations

from pyinfra import host

from config.paths import MAINTENANCE_FILE
from facts.host import Maintenance
from operations.before import facts_of_all_controllers, known_in_run
from operations.runstate import once


@once
def markers() -> dict:
    """Every controller's Maintenance fact, read before the run: {name: fact or None (unknown)}."""
    return facts_of_all_controllers(Maintenance, path=MAINTENANCE_FILE)


def in_maintenance() -> frozenset:
    """The controllers whose marker says they are in maintenance (one that could not be read
    counts as not in maintenance here: the deploy leaves it alone)."""
    return frozenset(n for n, f in markers().items() if f and f.get("out"))


def marked() -> bool:
    """This host is in maintenance. A controller of this run whose marker could not be read
    stops the run before any change (known_in_run): it may be out, and RabbitMQ must not be
    started or restarted there."""
    known_in_run(markers(), "the maintenance marker")
    return host.name in in_maintenance()
