"""pyinfra's list of global operation arguments, computed once per process instead of once per
operation call.

pyinfra 3.10's pop_global_arguments(), run for every operation call on every host, starts with
all_global_arguments(): typing.get_type_hints(AllArguments), which evaluates the ~30
annotations of pyinfra's argument classes each time. On a no-op deploy of the lab (321
operation calls offline, tests/unit/plan_cost.py) that alone was ~30% of the planning's CPU.
The annotations are those of classes defined once in pyinfra.api.arguments: the answer never
changes within a process, so it is kept (a new list each call, as before: a caller may change
its own).

Only for the pinned version (requirements.txt): another pyinfra is left as it is, since its
function may differ (test_pyinfra_args.py fails then, to look at it again).
"""

from __future__ import annotations

import functools

import pyinfra.api.arguments as _arguments
from pyinfra.version import __version__ as PYINFRA_VERSION

PINNED = "3.10.0"


def install() -> bool:
    """Keep all_global_arguments()'s answer in pyinfra.api.arguments (pop_global_arguments()
    looks the name up there at each call); True if installed (now or before)."""
    current = _arguments.all_global_arguments
    if getattr(current, "kept_by", None) == __name__:
        return True
    if PYINFRA_VERSION != PINNED:
        return False
    kept = functools.cache(lambda: tuple(current()))

    def all_global_arguments() -> list[tuple[str, type]]:
        return list(kept())

    all_global_arguments.__doc__ = current.__doc__
    all_global_arguments.__wrapped__ = current
    all_global_arguments.kept_by = __name__
    _arguments.all_global_arguments = all_global_arguments
    return True


install()
