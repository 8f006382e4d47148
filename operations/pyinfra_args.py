"""pyinfra's global operation arguments, found at less cost for every operation call: their list
computed once per process (install()), and their values in the host's data read in one pass
(install_lookup()).

pyinfra 3.10's pop_global_arguments(), run for every operation call on every host, starts with
all_global_arguments(): typing.get_type_hints(AllArguments), which evaluates the ~30
annotations of pyinfra's argument classes each time. On a no-op deploy of the lab (321
operation calls offline, tests/unit/plan_cost.py) that alone was ~30% of the planning's CPU.
The annotations are those of classes defined once in pyinfra.api.arguments: the answer never
changes within a process, so it is kept (a new list each call, as before: a caller may change
its own).

pop_global_arguments() then looks each of those ~30 names up in the host's data, one getattr
each: pyinfra's HostData tries every source in turn (override, host, groups merged again for
each name, global, the @deploy's), and nearly every name is in none. With 5 controllers that was
~25,000 failed lookups and the largest part of the planning's CPU (a cProfile of the no-op).
pop_global_arguments below is pyinfra 3.10's own, but for that: each source read once, the
first one holding a name gives its value (a copy, as HostData gives it).

Only for the pinned version (requirements.txt): another pyinfra is left as it is, since its
functions may differ (test_pyinfra_args.py fails then, to look at them again).
"""

from __future__ import annotations

import functools
import importlib
from copy import copy

import pyinfra.api.arguments as _arguments
from pyinfra.api.host import extract_callable_datas
from pyinfra.api.util import raise_if_bad_type
from pyinfra.context import ctx_config
from pyinfra.version import __version__ as PYINFRA_VERSION

PINNED = "3.10.0"
# pyinfra's modules that imported pop_global_arguments by name (each looks it up there)
IMPORTERS = ("pyinfra.api.arguments", "pyinfra.api.operation", "pyinfra.api.deploy", "pyinfra.api.facts")


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


def host_values(host, names) -> dict:
    """{name: value} of those `names` the host's data holds, as getattr(host.data, name) finds
    each (the first of its sources holding it; a copy), every source read once."""
    found: dict = {}
    wanted = set(names)
    for data in extract_callable_datas(host.data.datas):
        for name in [n for n in wanted if n in data] if isinstance(data, dict) else wanted:
            if name not in found:
                try:
                    found[name] = copy(data[name])
                except KeyError:
                    pass
    return found


def pop_global_arguments(state, host, kwargs):
    """pyinfra 3.10's pop_global_arguments (pyinfra.api.arguments), the host's data read once."""
    config = state.config
    if ctx_config.isset():
        config = ctx_config.get()
        assert config is not None

    cdkwargs = host.current_deploy_kwargs
    meta_kwargs = cdkwargs or {}

    arguments = {}
    found_keys = []
    names = _arguments.all_global_arguments()
    from_host = host_values(host, [key for key, _ in names])

    for key, type_ in names:
        argument_meta = _arguments.all_argument_meta[key]
        handler = argument_meta.handler
        default = argument_meta.default(config)

        if key in from_host:
            default = from_host[key]

        if key in kwargs:
            found_keys.append(key)
            value = kwargs.pop(key)
        else:
            value = meta_kwargs.get(key, default)

        if handler:
            value = handler(config, value)

        if value != default:
            raise_if_bad_type(
                value,
                type_,
                _arguments.ArgumentTypeError,
                f"Invalid argument `{key}`:",
            )

        arguments[key] = value
    return arguments, found_keys


def put(ours, name: str, modules: tuple[str, ...]) -> bool:
    """`ours` in place of pyinfra's function `name` in `modules` (pyinfra's modules that look it
    up there at each call), pyinfra's kept as ours.__wrapped__; True if in place (now or before).
    Only for the pinned version."""
    current = getattr(importlib.import_module(modules[0]), name)
    if current is ours:
        return True
    if PYINFRA_VERSION != PINNED:
        return False
    ours.__wrapped__ = current
    for module in modules:
        setattr(importlib.import_module(module), name, ours)
    return True


def install_lookup() -> bool:
    """Use pop_global_arguments above in pyinfra's modules that call it; True if installed (now
    or before)."""
    return put(pop_global_arguments, "pop_global_arguments", IMPORTERS)


install_lookup()
